"""The task VMs' network: a dedicated VPC, one subnet per allowed region, no way in.

- Custom-mode VPC `batch-tasks` (no default subnets, no default-network firewall rules that
  allow SSH/RDP/ICMP from anywhere, cloud.google.com/vpc/docs/firewalls#more_rules_default_vpc).
- One subnet per region the guardrails allow, with Private Google Access: VMs without
  external IPs reach Google APIs (Artifact Registry, Cloud Storage, Batch, Logging)
  (cloud.google.com/vpc/docs/private-google-access).
- Rendered jobs set `allocationPolicy.network.networkInterfaces[{network, subnetwork,
  noExternalIpAddress: true}]` (cloud.google.com/batch/docs/reference/rest/v1/
  projects.locations.jobs#networkinterface): an org policy `compute.vmExternalIpAccess`
  cannot fail them.
- No ingress at all, between tasks included: a deny-all ingress rule at the lowest priority
  number we use, logged (the implied deny would do the same, unlogged); no allow rule exists.
- Cloud NAT (settings.task_nat) for what lives outside Google (driver mirrors, public images,
  package indexes); egress only, no inbound (cloud.google.com/nat/docs/overview).
"""

from __future__ import annotations

from constructs import Construct

from stacks.layout import TASK_NETWORK
from stacks.provider import (
    ComputeFirewall,
    ComputeFirewallDeny,
    ComputeFirewallLogConfig,
    ComputeNetwork,
    ComputeRouter,
    ComputeRouterNat,
    ComputeSubnetwork,
    ComputeSubnetworkLogConfig,
)
from stacks.settings import EnvironmentSettings

# One /20 per region (4,096 addresses: more VMs than the GPU quotas allow at once).
SUBNET_BASE = "10.64"
DENY_PRIORITY = 1000


def subnet_range(index: int) -> str:
    return f"{SUBNET_BASE}.{index * 16}.0/20"


class TaskNetwork(Construct):
    def __init__(self, scope: Construct, id_: str, settings: EnvironmentSettings) -> None:
        super().__init__(scope, id_)
        project = settings.project_id
        self.network = ComputeNetwork(
            self, "vpc", project=project, name=TASK_NETWORK, auto_create_subnetworks=False,
            description="Batch task VMs: no external IPs, no ingress",
        )
        regions = settings.task_regions
        self.subnets = {}
        for i, region in enumerate(regions):
            self.subnets[region] = ComputeSubnetwork(
                self, f"subnet-{region}", project=project, region=region, name=TASK_NETWORK,
                network=self.network.id, ip_cidr_range=subnet_range(i),
                private_ip_google_access=True,
                # VPC Flow Logs: what each task VM talked to (checkov CKV_GCP_26).
                log_config=ComputeSubnetworkLogConfig(
                    aggregation_interval="INTERVAL_5_MIN", flow_sampling=0.5,
                    metadata="INCLUDE_ALL_METADATA"),
            )
            if settings.task_nat:
                router = ComputeRouter(self, f"router-{region}", project=project,
                                       region=region, name=f"{TASK_NETWORK}-{region}",
                                       network=self.network.id)
                ComputeRouterNat(
                    self, f"nat-{region}", project=project, region=region,
                    name=f"{TASK_NETWORK}-{region}", router=router.name,
                    nat_ip_allocate_option="AUTO_ONLY",
                    source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES",
                )
        ComputeFirewall(
            self, "deny-ingress", project=project, name=f"{TASK_NETWORK}-deny-ingress",
            network=self.network.id, direction="INGRESS", priority=DENY_PRIORITY,
            source_ranges=["0.0.0.0/0"], deny=[ComputeFirewallDeny(protocol="all")],
            log_config=ComputeFirewallLogConfig(metadata="INCLUDE_ALL_METADATA"),
            description="No connection into a task VM, from the internet or another task",
        )
