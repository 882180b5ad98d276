"""``manage.py poolstats``."""
