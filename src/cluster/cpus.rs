//! How many threads a rank runs by default: the physical cores it may use,
//! divided among the ranks of its node that may use the same ones.
//!
//! Launchers differ. MPICH's `mpiexec` binds nothing, so every rank of a node
//! sees all its cores and they must be shared out. `srun --cpus-per-task`,
//! Intel MPI under `ibrun` and Open MPI bind each rank to cores of its own, and
//! dividing those again would leave most of them idle. Comparing the ranks'
//! CPU sets tells the two apart.

/// Words of a CPU set: 1,024 CPUs, as glibc's `cpu_set_t`.
pub const MASK_WORDS: usize = 16;

/// A set of CPUs, one bit each; all zero when it could not be read.
pub type CpuMask = [u64; MASK_WORDS];

/// The CPUs this process may run on, or `None` where the OS does not say.
pub fn affinity() -> Option<CpuMask> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: a zeroed cpu_set_t is a valid empty set, and the kernel
        // writes at most size_of::<cpu_set_t>() bytes into it.
        let set = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
                return None;
            }
            set
        };
        let mut mask = [0u64; MASK_WORDS];
        for cpu in 0..MASK_WORDS * 64 {
            // SAFETY: cpu is below the set's capacity (CPU_SETSIZE = 1,024).
            if unsafe { libc::CPU_ISSET(cpu, &set) } {
                mask[cpu / 64] |= 1 << (cpu % 64);
            }
        }
        Some(mask).filter(|m| m.iter().any(|w| *w != 0))
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// The CPUs in `mask`, in order.
pub fn cpus(mask: &CpuMask) -> impl Iterator<Item = usize> + '_ {
    (0..MASK_WORDS * 64).filter(move |&c| mask[c / 64] & (1 << (c % 64)) != 0)
}

/// Physical cores among the CPUs of `mask`: SMT siblings count once. A CPU
/// whose core `core_of` cannot name counts as a core of its own.
pub fn physical_cores(mask: &CpuMask, core_of: impl Fn(usize) -> Option<(u32, u32)>) -> usize {
    let mut cores = std::collections::BTreeSet::new();
    let mut unknown = 0;
    for cpu in cpus(mask) {
        match core_of(cpu) {
            Some(core) => {
                cores.insert(core);
            }
            None => unknown += 1,
        }
    }
    cores.len() + unknown
}

/// Physical cores this process may run on: those of its CPU set, capped by
/// the CPUs it is allowed (a cgroup quota can allow fewer than the set holds).
pub fn own_physical_cores() -> usize {
    let allowed = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    affinity().map_or(allowed, |m| physical_cores(&m, sysfs_core).min(allowed))
}

/// (package, core) of a CPU, from sysfs.
pub fn sysfs_core(cpu: usize) -> Option<(u32, u32)> {
    let read = |what: &str| -> Option<u32> {
        std::fs::read_to_string(format!("/sys/devices/system/cpu/cpu{cpu}/topology/{what}")).ok()?.trim().parse().ok()
    };
    Some((read("physical_package_id")?, read("core_id")?))
}

/// Default threads for a rank with CPU set `mine` (`None`: unknown) and
/// `cores` physical cores, given the sets of all ranks on its node (its own
/// included; an all-zero set is unknown). The cores are shared with every
/// rank whose set overlaps `mine` (with all of them when a set is unknown).
pub fn thread_share(mine: Option<&CpuMask>, node: &[CpuMask], cores: usize) -> usize {
    let sharing = match mine {
        Some(mine) => node
            .iter()
            .filter(|other| other.iter().all(|w| *w == 0) || other.iter().zip(mine).any(|(a, b)| a & b != 0))
            .count(),
        None => node.len(),
    };
    (cores / sharing.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(cpus: &[usize]) -> CpuMask {
        let mut m = [0u64; MASK_WORDS];
        for &c in cpus {
            m[c / 64] |= 1 << (c % 64);
        }
        m
    }

    #[test]
    fn unbound_ranks_share_the_node() {
        // mpiexec (hydra) without binding: 4 ranks, each allowed all 16 cores.
        let all = mask(&(0..16).collect::<Vec<_>>());
        let node = vec![all; 4];
        assert_eq!(thread_share(Some(&all), &node, 16), 4);
    }

    #[test]
    fn bound_ranks_keep_their_own_cores() {
        // srun -n 4 -c 4 --cpu-bind=cores: disjoint sets of 4.
        let node: Vec<CpuMask> = (0..4).map(|r| mask(&(4 * r..4 * r + 4).collect::<Vec<_>>())).collect();
        for m in &node {
            assert_eq!(thread_share(Some(m), &node, 4), 4);
        }
        // Open MPI's --bind-to socket: ranks 0 and 1 on socket 0, 2 and 3 on socket 1.
        let s0 = mask(&(0..8).collect::<Vec<_>>());
        let s1 = mask(&(8..16).collect::<Vec<_>>());
        let node = vec![s0, s0, s1, s1];
        assert_eq!(thread_share(Some(&s0), &node, 8), 4);
        assert_eq!(thread_share(Some(&s1), &node, 8), 4);
    }

    #[test]
    fn unknown_sets_share_with_everyone() {
        let all = mask(&[0, 1, 2, 3]);
        let node = vec![all, [0; MASK_WORDS]];
        assert_eq!(thread_share(Some(&all), &node, 4), 2);
        assert_eq!(thread_share(None, &[[0; MASK_WORDS]; 3], 6), 2);
        // Never zero threads, however many ranks crowd a core.
        assert_eq!(thread_share(Some(&mask(&[0])), &[mask(&[0]); 8], 1), 1);
    }

    #[test]
    fn smt_siblings_are_one_core() {
        // 4 CPUs, 2 cores with 2 hardware threads each (cpu c on core c % 2).
        let m = mask(&[0, 1, 2, 3]);
        assert_eq!(physical_cores(&m, |c| Some((0, (c % 2) as u32))), 2);
        assert_eq!(physical_cores(&m, |_| None), 4);
        // High CPU numbers land in later words.
        let high = mask(&[70, 1000]);
        assert_eq!(cpus(&high).collect::<Vec<_>>(), vec![70, 1000]);
    }

    #[test]
    fn this_process_has_an_affinity() {
        let m = affinity().expect("sched_getaffinity on Linux");
        let n = cpus(&m).count();
        assert!(n >= 1);
        let allowed = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        assert!(n >= allowed, "{n} CPUs in the mask, {allowed} allowed");
        let cores = physical_cores(&m, sysfs_core);
        assert!((1..=n).contains(&cores));
        assert!((1..=cores.min(allowed)).contains(&own_physical_cores()));
    }
}
