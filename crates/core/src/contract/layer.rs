//! The bypass layers (docs/threat-model.md) as the contract names them: the layer list, a layer's state, and
//! what the layers counted. The dataplane attaches and reports them (`crates/core/src/dataplane/layers.rs`); the Node API's
//! `disableLayers` and `status().layers`, the agent's `BROKER_EBPF_DISABLE_LAYERS` and the control protocol's
//! GetHealth/GetStatus data all use these names, so a layer added here is accepted and reported everywhere,
//! and `js/code-lists.d.ts` gets it from `cargo xtask codegen`. Names are stable: never renamed or reused.

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

/// A bypass layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Layer {
    /// `cgroup/sock_create`: refuses raw IPv4/IPv6 sockets (and other kinds no sock_addr hook judges) created in
    /// managed cgroups.
    SockCreate,
    /// `lsm_cgroup/socket_create`: refuses packet (`AF_PACKET`) and XDP (`AF_XDP`) sockets created in managed
    /// cgroups. Needs the BPF LSM to be active and BPF_LSM_CGROUP (kernel >= 6.0).
    SocketCreateLsm,
    /// `cgroup_skb/egress`: drops IP packets of managed cgroups whose destination the policy denies, whatever
    /// socket made them (the packet-level backstop).
    Egress,
    /// Socket marks: connect/sendmsg verdicts and egress verdicts are stored on the socket, so the egress layer
    /// passes the packets of an already judged flow without judging them again. Without it the egress layer
    /// judges every packet that is not TCP, and only the SYN of TCP (no revocation of established flows).
    SocketStorage,
}

impl Layer {
    /// Every layer, in the order the status lists them.
    pub const ALL: [Layer; 4] = [
        Layer::SockCreate,
        Layer::SocketCreateLsm,
        Layer::Egress,
        Layer::SocketStorage,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Layer::SockCreate => "sock_create",
            Layer::SocketCreateLsm => "socket_create_lsm",
            Layer::Egress => "egress",
            Layer::SocketStorage => "socket_storage",
        }
    }
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Layer {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The name of a layer's state, as the wire writes it (`state` of a [`LayerStatus`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LayerStateName {
    Active,
    Disabled,
    Unavailable,
}

impl LayerStateName {
    pub const ALL: [LayerStateName; 3] = [
        LayerStateName::Active,
        LayerStateName::Disabled,
        LayerStateName::Unavailable,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            LayerStateName::Active => "active",
            LayerStateName::Disabled => "disabled",
            LayerStateName::Unavailable => "unavailable",
        }
    }
}

/// Whether a layer is in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayerState {
    /// Attached and enforcing.
    Active,
    /// Not attached because the options disabled it (`disableLayers`, `BROKER_EBPF_DISABLE_LAYERS`).
    Disabled,
    /// Not attached because the kernel lacks what it needs; the text says what.
    Unavailable(String),
}

impl LayerState {
    pub const fn name(&self) -> LayerStateName {
        match self {
            LayerState::Active => LayerStateName::Active,
            LayerState::Disabled => LayerStateName::Disabled,
            LayerState::Unavailable(_) => LayerStateName::Unavailable,
        }
    }

    pub const fn as_str(&self) -> &'static str {
        self.name().as_str()
    }

    /// Why the layer is unavailable.
    pub fn reason(&self) -> Option<&str> {
        match self {
            LayerState::Unavailable(r) => Some(r),
            _ => None,
        }
    }
}

/// One layer and its state; on the wire `{"layer", "state", "reason"?}`, `reason` exactly for `unavailable`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerStatus {
    pub layer: Layer,
    pub state: LayerState,
}

impl Serialize for LayerStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let reason = self.state.reason();
        let mut st = s.serialize_struct("LayerStatus", 2 + usize::from(reason.is_some()))?;
        st.serialize_field("layer", self.layer.as_str())?;
        st.serialize_field("state", self.state.as_str())?;
        if let Some(r) = reason {
            st.serialize_field("reason", r)?;
        }
        st.end()
    }
}

/// The layers in force, in status order: what `activeLayers` reports beside the full `layers` list.
pub fn active_layers(layers: &[LayerStatus]) -> Vec<Layer> {
    layers
        .iter()
        .filter(|l| l.state == LayerState::Active)
        .map(|l| l.layer)
        .collect()
}

/// What the layers refused, dropped and judged, summed over CPUs since the counters map was created (it is
/// pinned: an adopted state keeps counting).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LayerCounters {
    /// Sockets refused at creation (enforce).
    pub sockets_refused: u64,
    /// Sockets observe mode let through that enforce would have refused.
    pub sockets_would_refuse: u64,
    /// Packets the egress layer dropped (every one also has an event, or a count in `dropped_in_kernel`).
    pub packets_dropped: u64,
    /// Packets observe mode let through that the egress layer would have dropped (reported once per flow).
    pub packets_would_drop: u64,
    /// Packets the egress layer judged against the policy: not covered by a valid socket mark.
    pub packets_judged: u64,
    /// Socket marks written (by a connect/sendmsg verdict or an egress verdict).
    pub marks_written: u64,
}

impl LayerCounters {
    /// The wire keys, in the order of the fields (GetStatus `layerCounters`).
    pub const KEYS: [&'static str; 6] = [
        "socketsRefused",
        "socketsWouldRefuse",
        "packetsDropped",
        "packetsWouldDrop",
        "packetsJudged",
        "marksWritten",
    ];

    /// The values, in [`Self::KEYS`] order.
    pub const fn values(&self) -> [u64; 6] {
        [
            self.sockets_refused,
            self.sockets_would_refuse,
            self.packets_dropped,
            self.packets_would_drop,
            self.packets_judged,
            self.marks_written,
        ]
    }

    /// The counters from values in [`Self::KEYS`] order.
    pub const fn from_values(v: [u64; 6]) -> Self {
        LayerCounters {
            sockets_refused: v[0],
            sockets_would_refuse: v[1],
            packets_dropped: v[2],
            packets_would_drop: v[3],
            packets_judged: v[4],
            marks_written: v[5],
        }
    }
}

crate::contract::wire_literal::wire_literal_from_all!(Layer, LayerStateName);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::wire_literal::WireLiteral;

    #[test]
    fn names_round_trip() {
        for l in Layer::ALL {
            assert_eq!(Layer::from_wire_literal(l.as_str()), Some(l));
        }
        assert_eq!(Layer::from_wire_literal("raw"), None);
        for s in LayerStateName::ALL {
            assert_eq!(LayerStateName::from_wire_literal(s.as_str()), Some(s));
        }
    }

    #[test]
    fn a_status_serializes_its_reason_only_when_unavailable() {
        let active = LayerStatus {
            layer: Layer::SockCreate,
            state: LayerState::Active,
        };
        let gone = LayerStatus {
            layer: Layer::SocketCreateLsm,
            state: LayerState::Unavailable("no BPF LSM".into()),
        };
        assert_eq!(
            serde_json::to_string(&[&active, &gone]).ok(),
            Some(
                r#"[{"layer":"sock_create","state":"active"},{"layer":"socket_create_lsm","state":"unavailable","reason":"no BPF LSM"}]"#
                    .into()
            )
        );
        assert_eq!(active_layers(&[active, gone]), vec![Layer::SockCreate]);
    }

    #[test]
    fn counter_keys_follow_the_serialized_fields() {
        let c = LayerCounters::from_values([1, 2, 3, 4, 5, 6]);
        assert_eq!(c.values(), [1, 2, 3, 4, 5, 6]);
        let v = serde_json::to_value(c).unwrap_or_default();
        let keys: Vec<&str> = v
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(keys, LayerCounters::KEYS);
        for (k, want) in LayerCounters::KEYS.iter().zip(c.values()) {
            assert_eq!(v[k].as_u64(), Some(want), "{k}");
        }
    }
}
