"""Management commands of django_mysql_pooled."""
