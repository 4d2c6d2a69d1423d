"""Figma files and the design components generated into code."""

from __future__ import annotations

from django.contrib.postgres.indexes import GinIndex
from django.db import models

from companyos.foundation.console.history import tracked
from companyos.foundation.events import StateEvents
from companyos.foundation.models import ExternalModel, choices_check
from companyos.foundation.search import Searchable, trigram_index
from companyos.foundation.tracking import TrackedFieldsMixin


class FigmaFileEditorType(models.TextChoices):
    FIGMA = "figma"
    FIGJAM = "figjam"


class FigmaFile(ExternalModel):
    """A Figma or FigJam file we track."""

    operators_may_change = True

    EditorType = FigmaFileEditorType

    # What the console's global search looks in (companyos.foundation.search).
    global_search = Searchable(text=("name", "file_key"))

    organization = models.ForeignKey(
        "core.Organization", on_delete=models.CASCADE, related_name="figma_files", db_index=False
    )
    integration = models.ForeignKey(
        "integrations.Integration", on_delete=models.SET_NULL, null=True, blank=True, related_name="figma_files"
    )
    file_key = models.CharField(max_length=64)
    name = models.CharField(max_length=300)
    url = models.URLField(max_length=500, blank=True)
    thumbnail_url = models.URLField(max_length=1000, blank=True)
    editor_type = models.CharField(max_length=16, choices=EditorType, default=EditorType.FIGMA)
    project_name = models.CharField(max_length=300, blank=True)
    version = models.CharField(max_length=64, blank=True)
    last_modified_at = models.DateTimeField(null=True, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)

    class Meta(ExternalModel.Meta):
        triggers = tracked()
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "file_key"], name="design_figmafile_key_unique"),
            choices_check("editor_type", FigmaFileEditorType, "design_figmafile"),
        ]
        indexes = [
            # The sync job: files changed in Figma since we last looked, stalest first.
            models.Index(fields=["last_synced_at"], name="figma_sync_idx"),
            # The global search (global_search above).
            trigram_index("name", name="figma_name_trgm"),
            trigram_index("file_key", name="figma_file_key_trgm"),
        ]

    def __str__(self) -> str:
        return self.name


class DesignComponentKind(models.TextChoices):
    COMPONENT = "component"
    COMPONENT_SET = "component_set"
    STYLE = "style"


class DesignComponentCodeStatus(models.TextChoices):
    NOT_STARTED = "not_started"
    GENERATED = "generated"
    IN_REVIEW = "in_review"
    SYNCED = "synced"
    OUTDATED = "outdated"


class DesignComponent(TrackedFieldsMixin, ExternalModel):
    """A component (or style) in a Figma file, and the state of its code."""

    # Real-time events (companyos.foundation.events), published by any save
    # (an admin edit too); design.services.components_mark_outdated names the user.
    state_events = StateEvents(
        topic="design.component",
        category="design",
        state_field="code_status",
        states={DesignComponentCodeStatus.OUTDATED: "design.component.outdated"},
        snapshot=("name",),
        organization=lambda component: component.figma_file.organization_id,
        extra_data=lambda component: {"figma_file": component.figma_file_id},
    )

    operators_may_change = True
    status_tones = {
        DesignComponentCodeStatus.GENERATED: "warning",
        DesignComponentCodeStatus.IN_REVIEW: "warning",
        DesignComponentCodeStatus.SYNCED: "success",
        DesignComponentCodeStatus.OUTDATED: "warning",
    }

    Kind = DesignComponentKind

    CodeStatus = DesignComponentCodeStatus

    # What the console's global search looks in (companyos.foundation.search).
    global_search = Searchable(text=("name",))

    figma_file = models.ForeignKey(
        "design.FigmaFile", on_delete=models.CASCADE, related_name="components", db_index=False
    )
    node_id = models.CharField(max_length=64)
    name = models.CharField(max_length=300)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=16, choices=Kind, default=Kind.COMPONENT)
    code_status = models.CharField(max_length=16, choices=CodeStatus, default=CodeStatus.NOT_STARTED)
    code_path = models.CharField(max_length=500, blank=True)
    code_repository = models.ForeignKey(
        "development.Repository", on_delete=models.SET_NULL, null=True, blank=True, related_name="design_components"
    )
    generated_by_agent = models.ForeignKey(
        "agents.Agent", on_delete=models.SET_NULL, null=True, blank=True, related_name="generated_components"
    )
    usage_count = models.PositiveIntegerField(default=0)
    last_used_at = models.DateTimeField(null=True, blank=True)
    properties = models.JSONField(default=dict, blank=True, help_text="Variant properties as Figma defines them.")

    class Meta(ExternalModel.Meta):
        triggers = tracked()
        ordering = ["figma_file", "name"]
        constraints = [
            models.UniqueConstraint(fields=["figma_file", "node_id"], name="design_component_node_unique"),
            choices_check("kind", DesignComponentKind, "design_component"),
            choices_check("code_status", DesignComponentCodeStatus, "design_component"),
        ]
        indexes = [
            # Components whose code must be regenerated, per file.
            models.Index(
                fields=["figma_file"], name="component_outdated_idx", condition=models.Q(code_status="outdated")
            ),
            # Filtering components by variant property (properties @> '{"size": "lg"}').
            GinIndex(fields=["properties"], name="component_properties_gin", opclasses=["jsonb_path_ops"]),
            # The most-used components first (design system dashboard).
            models.Index(fields=["-usage_count"], name="component_usage_idx"),
            # The global search (global_search above).
            trigram_index("name", name="component_name_trgm"),
        ]

    def __str__(self) -> str:
        return self.name
