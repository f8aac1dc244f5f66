"""``az://container/prefix``: Azure Blob Storage, with adlfs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import StoreError
from ..registry import Location, Scheme, register

#: Credential files of a mounted Secret and the adlfs option each sets.
CREDENTIALS = {
    "AZURE_STORAGE_CONNECTION_STRING": "connection_string",
    "AZURE_STORAGE_ACCOUNT_NAME": "account_name",
    "AZURE_STORAGE_ACCOUNT_KEY": "account_key",
    "AZURE_STORAGE_SAS_TOKEN": "sas_token",
}


def client_options(location: Location, credentials: Mapping[str, str]) -> dict[str, Any]:
    if location.region or location.endpoint_url:
        raise StoreError(
            "endpoint_url and region are S3 settings: for az:// set storage_options "
            "(account_host for another endpoint)",
            exit_code=2,
        )
    options: dict[str, Any] = dict(location.options)
    options.update({CREDENTIALS[name]: value for name, value in credentials.items()})
    return options


AZ = register(
    Scheme(
        names=("az", "abfs", "abfss"),
        install="pip install adlfs",
        credentials=CREDENTIALS,
        client_options=client_options,
    )
)
