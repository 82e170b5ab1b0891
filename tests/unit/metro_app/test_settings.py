"""Secrets in database URLs print masked wherever the hub logs or lists them."""

from __future__ import annotations

import pytest

from edgemnist.masking import mask_secrets
from metro_app.settings import mask_url


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://hub@db:5432/metro?password=s3cret",
        "postgresql+psycopg://hub@db/metro?sslmode=require&password=s3cret",
        "postgresql://hub:s3cret@db/metro",
        "postgresql://hub@db/metro?PASSWORD=s3cret&application_name=hub",
    ],
)
def test_password_never_prints(url):
    assert "s3cret" not in mask_url(url)
    assert "s3cret" not in mask_secrets(f"store {url} ready")


def test_the_rest_of_the_url_stays_readable():
    assert mask_url("postgresql://hub@db/metro?password=s3cret&sslmode=require").endswith("sslmode=require")
    assert "db/metro" in mask_secrets("store postgresql://hub@db/metro?password=x up")
