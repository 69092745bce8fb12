//! The dataplane applies the contract's input rules to Rust callers too: options that break them are refused
//! before anything touches the kernel, and (as root) the root cgroup of the hierarchy is only managed when the
//! caller allows it explicitly.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use interceptor_ebpf_core::contract::heartbeat::{GRACE_OPTION, INTERVAL_OPTION};
use interceptor_ebpf_core::dataplane::{
    self, CgroupRef, Dataplane, DataplaneError, DataplaneOptions, Mode,
};

fn refused_options(opts: DataplaneOptions) -> Vec<String> {
    match Dataplane::load(opts) {
        Err(DataplaneError::InvalidOption(e)) => e.issues.iter().map(|i| i.path_text()).collect(),
        Err(other) => panic!("expected InvalidOption, got {other}"),
        Ok(_) => panic!("invalid options were accepted"),
    }
}

#[test]
fn options_that_break_the_contract_are_refused_before_the_kernel_is_touched() {
    // A grace shorter than the interval can only flap between healthy and degraded.
    let flapping = DataplaneOptions {
        heartbeat_grace: Duration::from_millis(400),
        heartbeat_interval: Duration::from_millis(1000),
        pin_dir: Some(PathBuf::from("/nonexistent/never-created")),
        ..DataplaneOptions::default()
    };
    assert_eq!(refused_options(flapping), [INTERVAL_OPTION]);
    let bad = DataplaneOptions {
        ring_buffer_bytes: 12_288,
        event_queue_capacity: 0,
        heartbeat_grace: Duration::ZERO,
        ..DataplaneOptions::default()
    };
    assert_eq!(
        refused_options(bad),
        [GRACE_OPTION, "ringBufferBytes", "eventQueueCapacity"]
    );
    let e = Dataplane::load(DataplaneOptions {
        cgroup_root: Some(PathBuf::from("relative")),
        ..DataplaneOptions::default()
    })
    .err()
    .expect("refused");
    assert_eq!(e.code(), "ERR_DATAPLANE_INVALID_OPTION");
}

#[test]
fn the_root_cgroup_is_managed_only_when_allowed() {
    if support::skip("the_root_cgroup_is_managed_only_when_allowed") {
        return;
    }
    let mut env = support::TestEnv::new("rootrule");
    let (wl, _) = env.cgroup.child("wl");
    let dp = env.load();
    let mount = dataplane::cgroup2_root().expect("cgroup2 mount");
    for target in [CgroupRef::Id(1), CgroupRef::Path(mount.clone())] {
        match dp.upsert_managed_cgroup(&target, None, None) {
            Err(e @ DataplaneError::CgroupRootRefused { .. }) => {
                assert_eq!(e.code(), "ERR_DATAPLANE_CGROUP_ROOT_REFUSED");
            }
            other => panic!("{target}: expected a refusal, got {other:?}"),
        }
    }
    assert!(dp.status().expect("status").managed_cgroups.is_empty());
    // A workload id breaking the id-slot rule is refused here too (the Node API and the agent check it first).
    for bad in ["", "a\nb"] {
        assert!(matches!(
            dp.upsert_managed_cgroup(&CgroupRef::Path(wl.clone()), None, Some(bad)),
            Err(DataplaneError::InvalidOption(_))
        ));
    }
    // Allowed explicitly. The programs are attached to this test's parent cgroup only, so the entry affects
    // nothing outside it; it is removed again at once.
    let entry = dp
        .upsert_managed_cgroup_with(&CgroupRef::Id(1), Some(Mode::Observe), None, true)
        .expect("allowed");
    assert_eq!(entry.cgroup_id, 1);
    assert!(dp.delete_managed_cgroup(&CgroupRef::Id(1)).expect("delete"));
    let ok = dp
        .upsert_managed_cgroup(&CgroupRef::Path(wl), None, Some("wl-1"))
        .expect("an ordinary workload");
    assert_eq!(ok.workload_id.as_deref(), Some("wl-1"));
}
