"""Imports every domain's tables so `SQLModel.metadata` knows them all (migrations, checks)."""

import adapters.models
import certificates.models
import graph.models
import organizations.models
import signing.models
import storage.models

DOMAIN_TABLE_MODULES = [
    storage.models,
    organizations.models,
    certificates.models,
    graph.models,
    signing.models,
    adapters.models,
]
