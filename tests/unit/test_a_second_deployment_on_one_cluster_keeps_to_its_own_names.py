"""A second deployment beside the first on one cluster (staging beside production) with a
topic prefix of its own: its adapters' consumer groups were hard-coded
``gun-adapter-<authority>``, shared with the first deployment's, and the hub's changelogs
and groups, named after ``GUN_HUB_HUB__APP_ID`` (left at ``gun-hub``), were the first
deployment's: the refusal then blamed the partition count (review stop 39-O, O5).
"""

from __future__ import annotations

from gun_contract.kafka.acls import acl_plan, adapter_group
from gun_contract.kafka.admin import partition_refusal
from gun_contract.topics import topic_registry
from gun_hub.ops.lag_monitor import watched_groups

AUTHORITIES = ("dgal", "cites")


def test_the_adapters_groups_are_named_after_the_topic_prefix() -> None:
    staging = topic_registry("ro", AUTHORITIES)
    assert adapter_group(staging, "dgal") == "ro-adapter-dgal"
    # The default prefix keeps the names every deployment has used so far.
    assert adapter_group(topic_registry("gun", AUTHORITIES), "dgal") == "gun-adapter-dgal"
    granted = {
        group for grant in acl_plan(staging, "ro-hub", "ro-clearance") for group in grant.groups
    }
    assert {"ro-adapter-dgal", "ro-adapter-cites"} <= granted
    assert not [group for group in granted if group.startswith("gun-")]
    watched = {watched.group for watched in watched_groups(staging, "ro-hub", "ro-clearance")}
    assert {"ro-adapter-dgal", "ro-adapter-cites"} <= watched


def test_changelogs_of_another_count_alone_name_the_app_id_not_the_partition_count() -> None:
    refusal = str(
        partition_refusal({"gun-hub-audit-heads-changelog": 4, "gun-hub-cases-changelog": 4}, 8)
    )
    assert refusal.startswith(
        "gun-hub-audit-heads-changelog has 4 partitions; gun-hub-cases-changelog has 4 "
        "partitions, but kafka.partitions is 8"
    )
    assert "GUN_HUB_HUB__APP_ID" in refusal
    assert "another deployment" in refusal


def test_a_topic_of_the_registry_with_another_count_still_names_the_partition_count() -> None:
    refusal = str(partition_refusal({"ro.declarations": 4, "gun-hub-cases-changelog": 4}, 8))
    assert "Set GUN_HUB_KAFKA__PARTITIONS to the declarations topic's count" in refusal
    assert "GUN_HUB_HUB__APP_ID" not in refusal
