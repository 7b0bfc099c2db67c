//! Request bodies of Firecracker's API (v1.12, `src/firecracker/swagger/firecracker.yaml`).
//! Optional keys are left out when unset: Firecracker rejects keys it does not know.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct BootSource {
    pub kernel_image_path: String,
    pub boot_args: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initrd_path: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Drive {
    pub drive_id: String,
    pub path_on_host: String,
    pub is_root_device: bool,
    pub is_read_only: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct MachineConfig {
    pub vcpu_count: u8,
    pub mem_size_mib: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smt: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Vsock {
    pub guest_cid: u32,
    pub uds_path: String,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub enum ActionType {
    InstanceStart,
    SendCtrlAltDel,
    FlushMetrics,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstanceAction {
    pub action_type: ActionType,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_exactly_the_documented_keys() {
        let m = MachineConfig { vcpu_count: 2, mem_size_mib: 256, smt: None };
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"vcpu_count":2,"mem_size_mib":256}"#);
        let a = InstanceAction { action_type: ActionType::InstanceStart };
        assert_eq!(serde_json::to_string(&a).unwrap(), r#"{"action_type":"InstanceStart"}"#);
        let b = BootSource { kernel_image_path: "/k".into(), boot_args: "x".into(), initrd_path: None };
        assert_eq!(serde_json::to_string(&b).unwrap(), r#"{"kernel_image_path":"/k","boot_args":"x"}"#);
    }
}
