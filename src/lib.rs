//! hpcml: GPU- and MPI-ready machine-learning workloads for HPC clusters.
//!
//! Shared parts: [`cluster`] (the MPI world), [`device`] (CPU/GPU placement and
//! threads), [`report`] (tables, JSON, plots, progress), [`cli`] (exit codes and
//! the MPI-aware main). One folder per workload beside them.

#[cfg(feature = "torch")]
pub mod assets;
#[cfg(feature = "torch")]
pub mod bert;
pub mod cli;
pub mod cluster;
pub mod device;
#[cfg(feature = "torch")]
pub mod matmul;
#[cfg(feature = "torch")]
pub mod mnist;
pub mod pi;
pub mod report;
#[cfg(feature = "torch")]
mod shim;
#[cfg(feature = "torch")]
pub mod train;
