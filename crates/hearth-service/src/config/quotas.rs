//! `[quotas.user]` and `[quotas.admin]`: what each user may hold at once, by role (an
//! administrator can set other limits per user: `PUT /api/v1/users/{id}/quota`). 0: unlimited.

use hearth_proto::api::Quota;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quotas {
    pub user: RoleQuota,
    pub admin: RoleQuota,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoleQuota {
    pub max_workstations: u64,
    pub max_vcpus: u64,
    pub max_mem_mib: u64,
    pub max_disk_gib: u64,
    pub max_execs: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        // Users: room for a handful of workstations each; administrators: the host's limits.
        Quotas {
            user: RoleQuota { max_workstations: 10, max_vcpus: 16, max_mem_mib: 32 << 10, max_disk_gib: 200, max_execs: 16 },
            admin: RoleQuota { max_workstations: 0, max_vcpus: 0, max_mem_mib: 0, max_disk_gib: 0, max_execs: 0 },
        }
    }
}

impl Default for RoleQuota {
    fn default() -> Self {
        Quotas::default().user
    }
}

impl RoleQuota {
    /// As a quota: 0 becomes none (unlimited).
    pub fn as_quota(&self) -> Quota {
        let some = |n: u64| (n > 0).then_some(n);
        Quota {
            max_workstations: some(self.max_workstations),
            max_vcpus: some(self.max_vcpus),
            max_mem_mib: some(self.max_mem_mib),
            max_disk_gib: some(self.max_disk_gib),
            max_execs: some(self.max_execs),
        }
    }
}
