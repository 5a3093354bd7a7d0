import os

SECRET_KEY = "ausi-testbed-only"  # signs nothing the tests use (no sessions, no CSRF tokens)
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
USE_TZ = True
ROOT_URLCONF = "tenant.urls"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django_scim", "tenant"]
# No migration files: `migrate --run-syncdb` creates the tables of this throwaway app.
MIGRATION_MODULES = {"tenant": None}
MIDDLEWARE = ["tenant.auth.BearerToken", "django_scim.middleware.SCIMAuthCheckMiddleware"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["DJANGO_SCIM_DB"]}}
AUTH_USER_MODEL = "tenant.User"
SCIM_SERVICE_PROVIDER = {
    "NETLOC": os.environ.get("DJANGO_SCIM_NETLOC", "127.0.0.1"),
    "SCHEME": "http",
    "GROUP_MODEL": "tenant.models.Group",
    "AUTHENTICATION_SCHEMES": [
        {"type": "oauthbearertoken", "name": "OAuth Bearer Token", "description": "a bearer token"}
    ],
    "EXPOSE_SCIM_EXCEPTIONS": True,
}
LOGGING = {
    "version": 1,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_scim": {"handlers": ["console"], "level": "WARNING"}},
}
