"""Admin for people and organizations."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import BaseUserCreationForm, UserChangeForm
from django.template.response import TemplateResponse
from django.utils import timezone

from companyos.foundation.console.toolkit import (
    ModelAdmin,
    RecentRowsInline,
    badge,
    count_link,
    fk_link,
    run_action,
    status_badge,
    subquery_count,
)
from core.models import ApiToken, Organization, OrganizationMember, User
from core.services import api_token_create, api_token_revoke


class UserCreationForm(BaseUserCreationForm):
    class Meta:
        model = User
        fields = ("email", "name")


class UserEditForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"


@admin.register(User)
class UserAdmin(ModelAdmin, DjangoUserAdmin):
    form = UserEditForm
    add_form = UserCreationForm
    list_display = ("email", "name", status_badge("role"), "is_staff", "is_active", "organizations_count", "last_login")
    list_filter = ("role", "is_staff", "is_active", "groups")
    search_fields = ("email", "name", "github_username")
    ordering = ("email",)
    date_hierarchy = "date_joined"
    filter_horizontal = ("groups", "user_permissions")
    readonly_fields = ("last_login", "date_joined")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("name", "avatar_url", "github_username", "timezone", "settings")}),
        ("Access", {"fields": ("role", "is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined", "created_at", "updated_at")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "name", "password1", "password2")}),)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(memberships_total=subquery_count(OrganizationMember, "user"))

    organizations_count = staticmethod(
        count_link(OrganizationMember, "user", "memberships_total", description="organizations")
    )


class MemberInline(RecentRowsInline):
    """The newest members, editable; the members count links to all of them."""

    model = OrganizationMember
    fk_name = "organization"
    max_rows = 50
    fields = ("user", "role", "invited_by", "joined_at")
    autocomplete_fields = ("user", "invited_by")
    show_change_link = False


@admin.register(Organization)
class OrganizationAdmin(ModelAdmin):
    list_display = ("name", "slug", status_badge("plan"), "is_active", "members_count", "created_at")
    list_filter = ("plan", "is_active")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("members_count",)
    date_hierarchy = "created_at"
    inlines = (MemberInline,)
    fieldsets = (
        # The members inline shows the newest 50; the count links to all of them.
        (None, {"fields": ("name", "slug", "plan", "is_active", "members_count")}),
        ("Appearance and settings", {"fields": ("logo_url", "settings")}),
        ("Dates", {"fields": ("created_at", "updated_at")}),
    )

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(members_total=subquery_count(OrganizationMember, "organization"))

    members_count = staticmethod(count_link(OrganizationMember, "organization", "members_total", description="members"))


@admin.register(OrganizationMember)
class OrganizationMemberAdmin(ModelAdmin):
    list_display = (
        "__str__",
        fk_link("user"),
        fk_link("organization"),
        status_badge("role"),
        fk_link("invited_by"),
        "joined_at",
    )
    list_select_related = ("user", "organization", "invited_by")
    list_filter = ("role", "organization")
    search_fields = ("user__email", "user__name", "organization__name")
    autocomplete_fields = ("organization", "user", "invited_by")
    date_hierarchy = "joined_at"
    fieldsets = (
        (None, {"fields": ("organization", "user", "role")}),
        ("Invitation", {"fields": ("invited_by", "joined_at")}),
        ("Dates", {"fields": ("created_at", "updated_at")}),
    )


@admin.register(ApiToken)
class ApiTokenAdmin(ModelAdmin):
    """Tokens are created through the service and shown once; only their hash is stored."""

    list_display = ("name", fk_link("user"), "prefix", "state", "expires_at", "last_used_at", "created_at")
    list_select_related = ("user",)
    list_filter = (("revoked_at", admin.EmptyFieldListFilter), ("expires_at", admin.EmptyFieldListFilter))
    search_fields = ("name", "=prefix", "user__email")
    autocomplete_fields = ("user",)
    readonly_fields = ("prefix", "last_used_at", "revoked_at")
    fieldsets = (
        (None, {"fields": ("user", "name", "expires_at")}),
        ("Use", {"fields": ("prefix", "last_used_at", "revoked_at", "created_at", "updated_at")}),
    )
    actions = ("revoke",)

    @admin.display(description="state")
    def state(self, obj):
        if obj.revoked_at:
            return badge(obj, "revoked")
        if obj.expires_at and obj.expires_at <= timezone.now():
            return badge(obj, "expired")
        return badge(obj, "active")

    def get_readonly_fields(self, request, obj=None):
        # A token's owner and expiry are fixed once it exists: revoke and create another.
        fixed = ("user", "expires_at") if obj is not None else ()
        return (*super().get_readonly_fields(request, obj), *fixed)

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        token, raw = api_token_create(user=obj.user, name=obj.name, expires_at=obj.expires_at)
        obj.pk, obj.prefix, obj.created_at = token.pk, token.prefix, token.created_at
        obj._state.adding, obj._state.db = False, token._state.db
        request.new_api_token = raw

    def response_add(self, request, obj, post_url_continue=None):
        """Show the token this once, on this response only (never stored, never in a message)."""
        context = {
            **self.admin_site.each_context(request),
            "title": "New API token",
            "opts": self.opts,
            "token": obj,
            "raw": request.new_api_token,
        }
        return TemplateResponse(request, "admin/core/apitoken/created.html", context)

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke(self, request, queryset):
        run_action(self, request, queryset, lambda token: api_token_revoke(token=token), verb="Revoked")
