"""Admin for people and organizations."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import BaseUserCreationForm, UserChangeForm

from companyos.admin_utils import ModelAdmin, count_link, fk_link, status_badge, subquery_count
from core.models import Organization, OrganizationMember, User


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


class MemberInline(admin.TabularInline):
    model = OrganizationMember
    fk_name = "organization"
    extra = 0
    fields = ("user", "role", "invited_by", "joined_at")
    autocomplete_fields = ("user", "invited_by")
    # An organization with thousands of members pages through the member list instead.
    max_num = 200


@admin.register(Organization)
class OrganizationAdmin(ModelAdmin):
    list_display = ("name", "slug", status_badge("plan"), "is_active", "members_count", "created_at")
    list_filter = ("plan", "is_active")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    date_hierarchy = "created_at"
    inlines = (MemberInline,)
    fieldsets = (
        (None, {"fields": ("name", "slug", "plan", "is_active")}),
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
