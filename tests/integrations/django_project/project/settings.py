"""A small real Django project: django.contrib.auth with session login, and the Orga route behind it."""

import json
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "integration-tests-only-" + "s" * 40
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "project.urls"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "orga_ai.integrations.django",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
if os.environ.get("TEST_NO_AUTH_MIDDLEWARE"):
    MIDDLEWARE.remove("django.contrib.auth.middleware.AuthenticationMiddleware")
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [BASE_DIR / "templates"]}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["TEST_DB_PATH"]}}
# No migrations: `migrate --run-syncdb` creates the tables straight from the models.
MIGRATION_MODULES = {"auth": None, "contenttypes": None, "sessions": None}
USE_TZ = True
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast; test users only

ORGA_PROXY = {
    "authenticate": "orga_ai.integrations.django.authenticated_user",
    "rate_limit": "1/minute",
    **json.loads(os.environ.get("TEST_ORGA_PROXY", "{}")),
}

if os.environ.get("TEST_CORS"):  # the app's own CORS, by django-cors-headers; the route adopts its allowlist
    INSTALLED_APPS.append("corsheaders")
    MIDDLEWARE.insert(0, "corsheaders.middleware.CorsMiddleware")
    CORS_ALLOWED_ORIGINS = ["https://app.example.com"]
    CORS_ALLOW_CREDENTIALS = True
    CORS_ALLOW_ALL_ORIGINS = os.environ["TEST_CORS"] == "all"

if os.environ.get("TEST_LOCALE"):  # a sync middleware that loads the URLs (in a worker thread under ASGI)
    MIDDLEWARE.insert(2, "django.middleware.locale.LocaleMiddleware")

if os.environ.get("TEST_DAPHNE"):  # daphne's runserver: ASGI, with the URLs loaded by the system checks at start
    INSTALLED_APPS.insert(0, "daphne")
    ASGI_APPLICATION = "project.asgi.application"

if os.environ.get("TEST_NO_ORGA_APP"):  # a project that only includes the URLs, without the app's start-up checks
    INSTALLED_APPS.remove("orga_ai.integrations.django")
