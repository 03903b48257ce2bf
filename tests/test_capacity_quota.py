"""Quota preflight rules (submit/quota.py), quota preferences for ladders (stacks/quotas.py),
and the local capacity simulation's configuration (local/capacity.py)."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.parts import Rung
from jobs.registry import ALL_JOBS
from local.capacity import CapacityConfig, CapacityConfigError, QuotaValue, job_placement
from local.executor import FaultConfig
from submit.quota import QuotaValue as SubmitQuota
from submit.quota import gpu_quota_id, limit_for, needs, shortfalls


@pytest.mark.parametrize("family", ["L4", "T4", "A100", "A100-80GB", "H100", "H200"])
@pytest.mark.parametrize("spot", [False, True])
def test_gpu_quota_ids_agree_with_the_stack(family: str, spot: bool) -> None:
    from stacks.quotas import GpuDemand, quota_id_and_dimensions

    demand = GpuDemand(family=family, count=1, spot=spot, region="europe-west4")
    stack = quota_id_and_dimensions(demand)
    assert gpu_quota_id(family, spot, "europe-west4") == stack


def test_needs_per_rung() -> None:
    common: dict[str, Any] = {"machine_type": "g2-standard-8", "gpu_type": "nvidia-l4",
                              "gpus_per_vm": 1, "vms": 3, "region": "us-central1",
                              "reservation": None}
    spot = needs(provisioning="spot", **common)
    assert [(n.quota_id, n.amount) for n in spot] == [
        ("CPUS-PER-VM-FAMILY-per-project-region", 24),
        ("PREEMPTIBLE-NVIDIA-L4-GPUS-per-project-region", 3),
        ("GPUS-ALL-REGIONS-per-project", 3)]
    flex = needs(provisioning="flex_start", **common)  # DWS draws on preemptible quota
    assert flex[1].quota_id == "PREEMPTIBLE-NVIDIA-L4-GPUS-per-project-region"
    standard = needs(provisioning="standard", **common)
    assert standard[1].quota_id == "NVIDIA-L4-GPUS-per-project-region"
    assert needs(provisioning="reservation_bound", **common | {"reservation": "r-l4"}) == []


def test_the_most_specific_dimensions_info_applies() -> None:
    need = needs(machine_type="a3-highgpu-1g", gpu_type="nvidia-h100-80gb", gpus_per_vm=1,
                 vms=2, provisioning="standard", reservation=None, region="us-east5")[1]
    qid = "GPUS-PER-GPU-FAMILY-per-project-region"
    values = [SubmitQuota(qid, {}, 100),  # every region, every family
              SubmitQuota(qid, {"region": "us-east5"}, 50),
              SubmitQuota(qid, {"region": "us-east5", "gpu_family": "NVIDIA_H100"}, 1),
              SubmitQuota(qid, {"region": "us-east5", "gpu_family": "NVIDIA_H200"}, 64)]
    assert limit_for(need, values) == 1
    assert shortfalls([need], values) == [
        f"{qid} in us-east5 is 1, the run needs 2 H100 GPUs"]
    assert limit_for(need, values[:2]) == 50
    assert limit_for(need, []) is None  # unknown: not checked
    assert shortfalls([need], [SubmitQuota(qid, {}, -1)]) == []  # -1: unlimited


def test_local_capacity_config_parses_and_simulates() -> None:
    cfg = CapacityConfig.from_env({
        "LOCAL_BATCH_STOCKOUT": "europe-west4/spot, us-east1/*",
        "LOCAL_BATCH_TIME_TO_CAPACITY": "europe-west4/flex_start=5",
        "LOCAL_BATCH_GPUS": "us-central1/standard=2",
        "LOCAL_BATCH_QUOTAS": "global/GPUS-ALL-REGIONS-per-project=16,"
                              "us-east5/GPUS-PER-GPU-FAMILY-per-project-region:NVIDIA_H100=8",
    })
    assert cfg.admission("europe-west4", "spot", 1)[0] is None
    assert cfg.admission("us-east1", "standard", 0)[0] is None
    assert cfg.admission("europe-west4", "flex_start", 1)[0] == 5.0
    assert cfg.admission("europe-west4", "standard", 1) == (0.0, "")
    assert cfg.admission("us-central1", "standard", 4)[0] is None  # a VM needs 4, 2 free
    assert cfg.max_vms("us-central1", "standard", 1) == 2
    assert cfg.quotas == (
        QuotaValue("GPUS-ALL-REGIONS-per-project", {}, 16),
        QuotaValue("GPUS-PER-GPU-FAMILY-per-project-region",
                   {"region": "us-east5", "gpu_family": "NVIDIA_H100"}, 8))


@pytest.mark.parametrize(("var", "value"), [("LOCAL_BATCH_GPUS", "spot=2"),
                                            ("LOCAL_BATCH_QUOTAS", "global/X=lots")])
def test_bad_capacity_variables_name_the_variable(var: str, value: str) -> None:
    with pytest.raises(CapacityConfigError, match=var):
        CapacityConfig.from_env({var: value})


def test_capacity_file_round_trip(tmp_path: object) -> None:
    from pathlib import Path

    root = Path(str(tmp_path))
    cfg = CapacityConfig.from_env({"LOCAL_BATCH_STOCKOUT": "a-b1/spot",
                                   "LOCAL_BATCH_QUOTAS": "a-b1/Q=3"})
    cfg.write(root)
    assert CapacityConfig.read(root) == cfg
    assert CapacityConfig.read(root / "missing") == CapacityConfig()


def test_job_placement_reads_region_model_and_gpus() -> None:
    from google.cloud import batch_v1

    job = batch_v1.Job(allocation_policy={
        "location": {"allowed_locations": ["zones/us-central1-a"]},
        "instances": [{"policy": {"provisioning_model": "SPOT",
                                  "accelerators": [{"type_": "nvidia-l4", "count": 2}]}}]})
    assert job_placement(job, "europe-west4") == ("us-central1", "spot", 2)
    assert job_placement(batch_v1.Job(), "europe-west4") == ("europe-west4", "standard", 0)


def test_injected_losses_use_each_reserved_code_deterministically() -> None:
    faults = FaultConfig.from_env({"LOCAL_BATCH_PREEMPT_CODES": "50001,50002,50003,50004,50006",
                                   "LOCAL_BATCH_SEED": "1"})
    codes = {faults.code_for("uid", i, 0) for i in range(60)}
    assert codes == {50001, 50002, 50003, 50004, 50006}
    assert faults.code_for("uid", 3, 1) == faults.code_for("uid", 3, 1)
    assert FaultConfig.from_env({}).code_for("uid", 0, 0) == 50001


def test_quota_preferences_cover_every_rung_of_a_ladder() -> None:
    """A job that may run on SPOT or FLEX_START asks for the preemptible GPU quota
    too, in each candidate region."""
    from stacks.environments import load_environments

    dev = next(e for e in load_environments() if e.name == "dev")
    base = dev.gpu_demand()
    embed = ALL_JOBS["embed"].model_copy(update={
        "ladder": [Rung(provisioning="flex_start", deadline_s=600),
                   Rung(provisioning="reservation_bound", reservation="r-l4", deadline_s=600),
                   Rung(provisioning="standard")],
        "candidate_regions": [dev.region, "us-central1"], "provisioning": "standard"})
    env = dev.model_copy(update={"jobs": [embed if j.name == "embed" else j for j in dev.jobs]})
    totals = env.gpu_demand()
    peak = embed.peak_gpu_demand(dev.kind)
    assert peak is not None and not peak.spot
    for region in (dev.region, "us-central1"):
        assert totals[(region, "L4", True)] >= peak.count  # FLEX_START: preemptible quota
        assert totals[(region, "L4", False)] >= peak.count
    assert dev.gpu_demand() == base
    # One computation (issue 25 item 5): the planner's cap reads the same totals, ladder included.
    assert env.gpu_limit("L4") == max(n for (_, fam, _), n in totals.items() if fam == "L4")
    # the project-wide total counts each job once, at its default rung
    assert env.gpus_all_regions() == sum(base.values())


def test_quota_values_through_a_real_cloud_quotas_client() -> None:
    """The production read path (google-cloud-quotas' CloudQuotasClient over gRPC) against a
    small in-process CloudQuotas service: the resource name it asks for, DimensionsInfo
    parsing, NotFound for a quota the project does not have, PermissionDenied -> exit 2."""
    from concurrent import futures

    import grpc
    from google.cloud import cloudquotas_v1
    from google.cloud.cloudquotas_v1.services.cloud_quotas.transports import (
        CloudQuotasGrpcTransport,
    )

    from submit.errors import SubmitError
    from submit.quota import read_quota_values

    asked: list[str] = []
    prefix = "projects/p1/locations/global/services/compute.googleapis.com/quotaInfos/"

    def get(raw: bytes, context: grpc.ServicerContext) -> bytes:
        req = cloudquotas_v1.GetQuotaInfoRequest.deserialize(raw)
        asked.append(req.name)
        quota_id = req.name.removeprefix(prefix)
        if quota_id == "DENIED":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "cloudquotas.quotas.get")
        if quota_id != "NVIDIA-L4-GPUS-per-project-region":
            context.abort(grpc.StatusCode.NOT_FOUND, "no such quota")
        info = cloudquotas_v1.QuotaInfo(name=req.name, quota_id=quota_id, dimensions_infos=[
            {"dimensions": {"region": "europe-west4"}, "details": {"value": 0}},
            {"dimensions": {}, "details": {"value": 8}}])
        return cloudquotas_v1.QuotaInfo.serialize(info)

    handler = grpc.method_handlers_generic_handler("google.api.cloudquotas.v1.CloudQuotas", {
        "GetQuotaInfo": grpc.unary_unary_rpc_method_handler(get)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        client = cloudquotas_v1.CloudQuotasClient(
            transport=CloudQuotasGrpcTransport(channel=channel))
        values = read_quota_values(client, "p1", ["NVIDIA-L4-GPUS-per-project-region",
                                                  "GPUS-ALL-REGIONS-per-project"])
        assert asked == [prefix + "NVIDIA-L4-GPUS-per-project-region",
                         prefix + "GPUS-ALL-REGIONS-per-project"]
        assert values == [
            SubmitQuota("NVIDIA-L4-GPUS-per-project-region", {"region": "europe-west4"}, 0),
            SubmitQuota("NVIDIA-L4-GPUS-per-project-region", {}, 8)]
        with pytest.raises(SubmitError, match="permission denied"):
            read_quota_values(client, "p1", ["DENIED"])
    finally:
        server.stop(0)


def test_ladder_time_scale_is_local_only_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from submit.capacity import _time_scale
    from submit.errors import SubmitError

    monkeypatch.setenv("GPUB_LADDER_TIME_SCALE", "0.5")
    assert _time_scale(SimpleNamespace(name="google")) == 1.0  # type: ignore[arg-type]
    assert _time_scale(SimpleNamespace(name="local")) == 0.5  # type: ignore[arg-type]
    for bad in ("0", "-1", "fast"):
        monkeypatch.setenv("GPUB_LADDER_TIME_SCALE", bad)
        with pytest.raises(SubmitError, match="GPUB_LADDER_TIME_SCALE: must be a number > 0"):
            _time_scale(SimpleNamespace(name="local"))  # type: ignore[arg-type]
