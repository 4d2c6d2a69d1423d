"""How django-ninja was chosen for /api/v1/: the same list served by it and by Django REST framework.

Both serve a page of 100 deployments with the same authentication
(``companyos.api.auth.ApiAuth``), membership check, keyset page and
``last_event_id`` lookup; only the framework and its serializer differ
(ninja's ``DeploymentOut`` vs a DRF ``ModelSerializer`` of the same fields).
Requests go through Django's test client in one process, alternating, so
the figure is the framework's cost over the same queries. DRF is not a
requirement of the project: install it to rerun this.

    .venv/bin/pip install djangorestframework==3.18.3
    DATABASE_URL=postgres://.../companyos_bench .venv/bin/python bench/api_frameworks.py [--requests 300 --runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "companyos.config.settings")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.urls import include, path  # noqa: E402
from rest_framework import serializers  # noqa: E402
from rest_framework.authentication import BaseAuthentication  # noqa: E402
from rest_framework.renderers import JSONRenderer  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.views import APIView  # noqa: E402

from companyos.api.access import organization_of  # noqa: E402
from companyos.api.auth import ApiAuth  # noqa: E402
from companyos.api.pagination import page  # noqa: E402
from companyos.api.resources import RESOURCES, newest_event_id  # noqa: E402
from core.models import Organization, OrganizationMember, User  # noqa: E402
from core.services import api_token_create  # noqa: E402
from development.models import Deployment  # noqa: E402

DEPLOYMENTS = next(resource for resource in RESOURCES if resource.path == "deployments")


class DeploymentSerializer(serializers.ModelSerializer):
    last_event_id = serializers.UUIDField(allow_null=True, default=None)

    class Meta:
        model = Deployment
        exclude = ["organization", "metadata"]


class Authentication(BaseAuthentication):
    def authenticate(self, request):
        return ApiAuth()(request._request), None


class DeploymentList(APIView):
    authentication_classes = [Authentication]
    renderer_classes = [JSONRenderer]

    def get(self, request, organization: str):
        org = organization_of(request, organization)
        position = newest_event_id(org.pk)
        ordering = DEPLOYMENTS.orderings["-created_at"]
        items, cursor = page(DEPLOYMENTS.rows(org.pk), name="-created_at", ordering=ordering, cursor=None, limit=100)
        return Response(
            {"items": DeploymentSerializer(items, many=True).data, "next_cursor": cursor, "event_position": position}
        )


urlpatterns = [
    path("drf/orgs/<str:organization>/deployments/", DeploymentList.as_view()),
    path("api/", include("companyos.api.urls")),
]


def rate(client: Client, url: str, token: str, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        answer = client.get(url, HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_HOST="localhost", secure=True)
        assert answer.status_code == 200, answer.content[:300]
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    organization = Organization.objects.create(name="Framework bench", slug=f"bench-{uuid.uuid4().hex[:12]}")
    user = User.objects.create_user(f"{organization.slug}@example.com")
    OrganizationMember.objects.create(organization=organization, user=user)
    _, token = api_token_create(user=user, name="bench")
    Deployment.objects.bulk_create(
        Deployment(organization=organization, external_id=f"{organization.pk}-{i}", project_name="web", state="error")
        for i in range(150)
    )
    urls = {
        "django-ninja": f"/api/v1/orgs/{organization.slug}/deployments/?limit=100",
        "DRF": f"/drf/orgs/{organization.slug}/deployments/",
    }
    rates: dict[str, list[float]] = {name: [] for name in urls}
    queries = {}
    try:
        with override_settings(ROOT_URLCONF=__name__, API_RATE_LIMIT_PER_MINUTE=0):
            client = Client()
            for name, url in urls.items():
                rate(client, url, token, 20)  # warm up
                with CaptureQueriesContext(connection) as captured:
                    rate(client, url, token, 1)
                queries[name] = len(captured)
            for _ in range(args.runs):
                for name, url in urls.items():
                    rates[name].append(rate(client, url, token, args.requests))
    finally:
        organization.delete()
        user.delete()
    print(f"a page of 100 deployments, {args.requests} requests x {args.runs} runs, in process; medians")
    for name, measured in rates.items():
        print(f"{name:<14}{statistics.median(measured):>8.0f} requests/s  {queries[name]} queries")


if __name__ == "__main__":
    main()
