"""People and organizations."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone as dj_timezone

from companyos.foundation.console.history import tracked
from companyos.foundation.models import BaseModel, choices_check
from companyos.foundation.search import Searchable, trigram_index


class UserManager(BaseUserManager):
    use_in_migrations = True

    def get_by_natural_key(self, email: str) -> User:
        return self.get(email__iexact=email)

    def _create_user(self, email: str, password: str | None, **extra) -> User:
        if not email:
            raise ValueError("A user needs an email address.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.full_clean(exclude=["password"])
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra) -> User:
        extra.update(is_staff=True, is_superuser=True)
        extra.setdefault("role", User.Role.ADMIN)
        return self._create_user(email, password, **extra)


class UserRole(models.TextChoices):
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


class User(BaseModel, AbstractBaseUser, PermissionsMixin):
    """A person; logs in by email (unique regardless of case)."""

    Role = UserRole

    # What the console's global search looks in (companyos.foundation.search).
    global_search = Searchable(text=("email", "name"))

    email = models.EmailField(max_length=254)
    name = models.CharField(max_length=200, blank=True)
    avatar_url = models.URLField(max_length=500, blank=True)
    role = models.CharField(max_length=16, choices=Role, default=Role.MEMBER)
    github_username = models.CharField(max_length=39, blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    settings = models.JSONField(default=dict, blank=True, help_text="Notification and UI preferences.")
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False, help_text="May log in to the admin console.")
    date_joined = models.DateTimeField(default=dj_timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = ["name"]

    class Meta(BaseModel.Meta):
        triggers = tracked(hidden=("password",))
        ordering = ["email"]
        constraints = [
            models.UniqueConstraint(Lower("email"), name="core_user_email_ci_unique"),
            choices_check("role", UserRole, "core_user"),
        ]
        indexes = [
            # Pull requests name their author by GitHub login: map it to a user.
            models.Index(
                fields=["github_username"],
                name="core_user_github_idx",
                condition=~models.Q(github_username=""),
            ),
            # The global search (global_search above).
            trigram_index("email", name="core_user_email_trgm"),
            trigram_index("name", name="core_user_name_trgm"),
        ]

    def __str__(self) -> str:
        return self.email

    def natural_key(self) -> tuple[str]:
        return (self.email,)

    def clean(self) -> None:
        super().clean()
        self.email = self.__class__.objects.normalize_email(self.email).lower()

    def get_full_name(self) -> str:
        return self.name or self.email

    def get_short_name(self) -> str:
        return self.name.split(" ")[0] if self.name else self.email


class OrganizationPlan(models.TextChoices):
    FREE = "free"
    TEAM = "team"
    ENTERPRISE = "enterprise"


class Organization(BaseModel):
    """A company workspace; everything else belongs to one."""

    Plan = OrganizationPlan

    # What the console's global search looks in (companyos.foundation.search).
    global_search = Searchable(exact=("id", "slug"), text=("name",))

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, db_index=False)
    plan = models.CharField(max_length=16, choices=Plan, default=Plan.FREE)
    logo_url = models.URLField(max_length=500, blank=True)
    settings = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=True)
    members = models.ManyToManyField(
        "core.User",
        through="core.OrganizationMember",
        through_fields=("organization", "user"),
        related_name="organizations",
    )

    class Meta(BaseModel.Meta):
        triggers = tracked()
        ordering = ["name"]
        constraints = [
            # A constraint rather than unique=True: no extra LIKE index nobody queries.
            models.UniqueConstraint(fields=["slug"], name="core_organization_slug_unique"),
            choices_check("plan", OrganizationPlan, "core_organization"),
        ]
        indexes = [
            # The global search (global_search above).
            trigram_index("name", name="core_org_name_trgm"),
        ]

    def __str__(self) -> str:
        return self.name


class OrganizationMemberRole(models.TextChoices):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


class OrganizationMember(BaseModel):
    """A user's membership (and role) in an organization."""

    Role = OrganizationMemberRole

    # The unique (organization, user) index serves lookups by organization.
    organization = models.ForeignKey(
        "core.Organization", on_delete=models.CASCADE, related_name="memberships", db_index=False
    )
    user = models.ForeignKey("core.User", on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role, default=Role.MEMBER)
    # Who invited is history: deleting the inviter must not delete the member.
    invited_by = models.ForeignKey(
        "core.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="invitations_sent"
    )
    joined_at = models.DateTimeField(default=dj_timezone.now)

    class Meta(BaseModel.Meta):
        triggers = tracked()
        ordering = ["organization", "joined_at"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "user"], name="core_member_org_user_unique"),
            choices_check("role", OrganizationMemberRole, "core_member"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"


class ApiToken(BaseModel):
    """A user's API token for non-browser clients (websocket, scripts).

    Only a SHA-256 hash of the token is stored: the token itself is shown
    once, at creation (``core.services.api_token_create``). The token is 256
    random bits, so a plain fast hash is enough (no password-style stretching).
    """

    status_tones = {"active": "success", "revoked": "danger"}

    user = models.ForeignKey("core.User", on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What the token is for, e.g. “CI deploy watcher”.")
    prefix = models.CharField(max_length=16, editable=False, help_text="The token's first characters, to recognise it.")
    token_hash = models.CharField(max_length=64, editable=False, help_text="SHA-256 of the token, hex.")
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires.")
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta(BaseModel.Meta):
        triggers = tracked(hidden=("token_hash",))
        verbose_name = "API token"
        ordering = ["-created_at"]
        constraints = [
            # The lookup on every authenticated connection, by hash.
            models.UniqueConstraint(fields=["token_hash"], name="core_apitoken_hash_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def is_usable(self, now=None) -> bool:
        """Neither revoked nor expired."""
        now = now or dj_timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)
