"""A small Django project that runs on the ``django_mysql_pooled`` backend."""
