"""The one piece of auth django-scim2 leaves to its host: who may call it (a bearer token)."""
import hmac
import os


class _Agent:
    is_authenticated = True
    is_anonymous = False
    is_active = True
    pk = None
    id = None


class BearerToken:
    def __init__(self, get_response):
        self.get_response = get_response
        with open(os.environ["DJANGO_SCIM_TOKEN_FILE"], "rb") as f:
            self.token = f.read().strip()

    def __call__(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "").encode()
        scheme, _, given = header.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token):
            request.user = _Agent()
        return self.get_response(request)
