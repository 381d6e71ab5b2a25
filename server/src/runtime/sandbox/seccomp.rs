//! The system calls a sandboxed process may not make, as a seccomp filter bubblewrap installs
//! before it runs the command: the kernel's riskiest surfaces that no service needs (io_uring,
//! BPF, perf, userfaultfd, keyrings shared with the host, module and mount machinery, namespace
//! changes) answer `EPERM`; so does a vsock socket, which a network namespace does not separate.
//! Everything else is allowed: a denylist in the spirit of Docker's default profile, on top of
//! an unprivileged uid with `NoNewPrivs`.

use seccompiler::{BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch};
use std::collections::BTreeMap;

const AF_VSOCK: u64 = 40;

fn denied() -> Vec<i64> {
    vec![
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_perf_event_open,
        libc::SYS_bpf,
        libc::SYS_userfaultfd,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_acct,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_reboot,
        libc::SYS_syslog,
        libc::SYS_lookup_dcookie,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
        libc::SYS_quotactl,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_fsopen,
        libc::SYS_fsmount,
        libc::SYS_fsconfig,
        libc::SYS_fspick,
        libc::SYS_setns,
        libc::SYS_unshare,
        libc::SYS_vhangup,
    ]
}

fn arch() -> Result<TargetArch, String> {
    if cfg!(target_arch = "x86_64") {
        Ok(TargetArch::x86_64)
    } else if cfg!(target_arch = "aarch64") {
        Ok(TargetArch::aarch64)
    } else {
        Err("the sandbox's system-call filter supports x86_64 and aarch64 only".into())
    }
}

/// The filter as bubblewrap reads it: `struct sock_filter` records, in this machine's byte order.
pub fn program() -> Result<Vec<u8>, String> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = denied().into_iter().map(|nr| (nr, vec![])).collect();
    let vsock = SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, AF_VSOCK).map_err(|e| e.to_string())?;
    rules.insert(libc::SYS_socket, vec![SeccompRule::new(vec![vsock]).map_err(|e| e.to_string())?]);
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), arch()?).map_err(|e| e.to_string())?;
    let program: BpfProgram = filter.try_into().map_err(|e: seccompiler::BackendError| e.to_string())?;
    let mut bytes = Vec::with_capacity(program.len() * 8);
    for ins in program {
        bytes.extend_from_slice(&ins.code.to_ne_bytes());
        bytes.push(ins.jt);
        bytes.push(ins.jf);
        bytes.extend_from_slice(&ins.k.to_ne_bytes());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_filter_compiles_to_whole_instructions() {
        let bytes = super::program().unwrap();
        assert!(!bytes.is_empty() && bytes.len() % 8 == 0, "{} bytes", bytes.len());
        // Well under the kernel's limit of 4096 instructions.
        assert!(bytes.len() / 8 < 4096);
    }
}
