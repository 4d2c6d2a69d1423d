"""Credentials and webhook secrets at rest: encrypted columns, dumps, key rotation."""

import io
import json

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import FieldError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.core.serializers.base import DeserializationError
from django.db import connection
from django.test import override_settings

from companyos.foundation import crypto
from integrations.models import Integration, Webhook
from integrations.tests.factories import IntegrationFactory, WebhookFactory

pytestmark = pytest.mark.django_db

SECRET_CREDENTIALS = {"access_token": "plain-token-4f1c9e", "nested": {"refresh": "plain-refresh-77ab", "ttl": 3600}}


def raw_column(model, pk, column: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {model._meta.db_table} WHERE id = %s", [pk])  # noqa: S608
        return cursor.fetchone()[0]


def test_raw_credentials_column_holds_no_plaintext():
    integration = IntegrationFactory(credentials=SECRET_CREDENTIALS)
    stored = raw_column(Integration, integration.pk, "credentials")
    assert crypto.looks_like_token(stored)
    for needle in ("plain-token-4f1c9e", "plain-refresh-77ab", "access_token", "3600"):
        assert needle not in stored
    assert Integration.objects.get(pk=integration.pk).credentials == SECRET_CREDENTIALS


def test_raw_webhook_secret_column_holds_no_plaintext():
    webhook = WebhookFactory(secret="whsec-plain-9d2e")
    stored = raw_column(Webhook, webhook.pk, "secret")
    assert crypto.looks_like_token(stored) and "whsec-plain-9d2e" not in stored
    assert Webhook.objects.get(pk=webhook.pk).secret == "whsec-plain-9d2e"


def test_even_empty_credentials_are_encrypted():
    integration = IntegrationFactory(credentials={})
    assert crypto.looks_like_token(raw_column(Integration, integration.pk, "credentials"))
    assert Integration.objects.get(pk=integration.pk).credentials == {}


def test_unicode_credentials_round_trip():
    value = {"password": "pässwörd 🔑", "list": [1, {"k": "値"}]}
    integration = IntegrationFactory(credentials=value)
    assert Integration.objects.get(pk=integration.pk).credentials == value


def test_filtering_on_an_encrypted_column_is_refused():
    # Every token has a fresh IV: an equality filter could never match.
    with pytest.raises(FieldError):
        list(Integration.objects.filter(credentials=SECRET_CREDENTIALS))
    assert Integration.objects.filter(credentials__isnull=True).count() == 0


class TestDumpAndLoad:
    def dump(self) -> str:
        out = io.StringIO()
        call_command("dumpdata", "integrations.integration", "integrations.webhook", stdout=out)
        return out.getvalue()

    def test_dumpdata_emits_only_tokens_and_the_dump_reloads(self, tmp_path):
        integration = IntegrationFactory(credentials=SECRET_CREDENTIALS)
        webhook = WebhookFactory(integration=integration, secret="whsec-plain-9d2e")
        dumped = self.dump()
        for needle in ("plain-token-4f1c9e", "plain-refresh-77ab", "whsec-plain-9d2e"):
            assert needle not in dumped
        records = {record["model"]: record["fields"] for record in json.loads(dumped)}
        assert crypto.looks_like_token(records["integrations.integration"]["credentials"])
        assert crypto.looks_like_token(records["integrations.webhook"]["secret"])

        path = tmp_path / "dump.json"
        path.write_text(dumped)
        webhook.integration.delete()
        call_command("loaddata", str(path), verbosity=0)
        restored = Webhook.objects.select_related("integration").get(pk=webhook.pk)
        assert restored.secret == "whsec-plain-9d2e"
        assert restored.integration.credentials == SECRET_CREDENTIALS
        assert crypto.looks_like_token(raw_column(Webhook, webhook.pk, "secret"))

    def test_loading_a_token_from_another_key_fails_loudly(self, tmp_path):
        webhook = WebhookFactory()
        record = json.loads(self.dump())[-1]
        record["fields"]["secret"] = Fernet(Fernet.generate_key()).encrypt(b"foreign").decode()
        path = tmp_path / "foreign.json"
        path.write_text(json.dumps([record]))
        with pytest.raises(DeserializationError, match="cannot be decrypted"):
            call_command("loaddata", str(path), verbosity=0)
        assert Webhook.objects.get(pk=webhook.pk).secret == webhook.secret


class TestKeyRotation:
    def rotate(self, **options) -> str:
        out = io.StringIO()
        call_command("rotate_encryption_keys", stdout=out, **options)
        return out.getvalue()

    def test_a_rotated_key_still_decrypts_old_rows_and_the_command_moves_them(self, settings):
        old_key = settings.FIELD_ENCRYPTION_KEYS[0]
        new_key = crypto.generate_key()
        integrations = IntegrationFactory.create_batch(3, credentials=SECRET_CREDENTIALS)
        webhook = WebhookFactory(secret="whsec-plain-9d2e")
        old_tokens = {i.pk: raw_column(Integration, i.pk, "credentials") for i in integrations}

        with override_settings(FIELD_ENCRYPTION_KEYS=[new_key, old_key]):
            # Rows written under the old key still read; new rows use the new key.
            reread = Integration.objects.filter(pk__in=old_tokens)
            assert [i.credentials for i in reread] == [SECRET_CREDENTIALS] * 3
            fresh = IntegrationFactory(credentials={"k": "v"})
            assert crypto.is_current(raw_column(Integration, fresh.pk, "credentials"))
            assert not any(crypto.is_current(token) for token in old_tokens.values())

            output = self.rotate(batch_size=2)  # several batches
            assert "Done: 5 value(s) re-encrypted, 1 already under the newest key." in output
            assert all(crypto.is_current(raw_column(Integration, pk, "credentials")) for pk in old_tokens)
            # Idempotent: nothing left to do.
            assert "Done: 0 value(s) re-encrypted, 6 already under the newest key." in self.rotate()

        with override_settings(FIELD_ENCRYPTION_KEYS=[new_key]):
            # The old key can now be dropped.
            assert Integration.objects.get(pk=integrations[0].pk).credentials == SECRET_CREDENTIALS
            assert Webhook.objects.get(pk=webhook.pk).secret == "whsec-plain-9d2e"

    def test_rotation_keeps_updated_at(self, settings):
        integration = IntegrationFactory()
        updated_at = Integration.objects.filter(pk=integration.pk).values_list("updated_at", flat=True)
        before = updated_at.get()
        with override_settings(FIELD_ENCRYPTION_KEYS=[crypto.generate_key(), settings.FIELD_ENCRYPTION_KEYS[0]]):
            self.rotate()
        assert updated_at.get() == before

    def test_an_undecryptable_row_aborts_the_whole_run(self, settings):
        good = IntegrationFactory()
        bad = WebhookFactory()
        with connection.cursor() as cursor:
            cursor.execute("UPDATE integrations_webhook SET secret = 'not-a-token' WHERE id = %s", [bad.pk])
        good_token = raw_column(Integration, good.pk, "credentials")
        with (
            override_settings(FIELD_ENCRYPTION_KEYS=[crypto.generate_key(), settings.FIELD_ENCRYPTION_KEYS[0]]),
            pytest.raises(CommandError, match=f"integrations_webhook.secret of row {bad.pk}"),
        ):
            self.rotate()
        assert raw_column(Integration, good.pk, "credentials") == good_token

    def test_generate_encryption_key_prints_a_new_fernet_key(self):
        keys = set()
        for _ in range(2):
            out = io.StringIO()
            call_command("generate_encryption_key", stdout=out)
            keys.add(out.getvalue().strip())
        assert len(keys) == 2
        for key in keys:
            assert Fernet(key.encode()).decrypt(Fernet(key.encode()).encrypt(b"x")) == b"x"
