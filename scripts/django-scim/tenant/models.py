from django.contrib.auth.models import AbstractUser
from django.db import models
from django_scim.models import AbstractSCIMGroupMixin, AbstractSCIMUserMixin


class Group(AbstractSCIMGroupMixin):
    name = models.CharField(max_length=255)


class User(AbstractSCIMUserMixin, AbstractUser):
    # The default adapters read `user.scim_groups` and `group.user_set`.
    scim_groups = models.ManyToManyField(Group, related_name="user_set", blank=True)
