//! What the campaign counts, and the report it prints: as text, and as one
//! JSON line (`faultinj-json: {...}`) that `cargo xtask faults` saves.

use crate::workload::Outcome;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use fault_hooks::Fault;
use runtime::println;

/// The campaign's counts.
pub struct Campaign {
    count: u32,
    seed: u64,
    /// Faults injected, by target name and fault.
    injected: Vec<(&'static str, Fault)>,
    /// Recovery times in cycles, for the faults the target recovered from.
    recoveries: Vec<u64>,
    /// Faults after which the target did not recover in time.
    lost: u32,
    skipped: u32,
    restarts: u32,
    workload: Outcome,
    chatter: (u32, u64),
    /// Milliseconds and cycles at the start and end, to convert cycles.
    clock: ((u64, u64), (u64, u64)),
}

impl Campaign {
    /// An empty campaign of `count` faults from `seed`.
    pub fn new(count: u32, seed: u64) -> Self {
        Self {
            count,
            seed,
            injected: Vec::new(),
            recoveries: Vec::new(),
            lost: 0,
            skipped: 0,
            restarts: 0,
            workload: Outcome::default(),
            chatter: (0, 0),
            clock: ((0, 0), (0, 0)),
        }
    }

    /// Faults injected so far.
    pub fn injected(&self) -> u32 {
        self.injected.len() as u32
    }

    /// One fault could not be injected; returns how many could not.
    pub fn skip(&mut self) -> u32 {
        self.skipped += 1;
        self.skipped
    }

    /// One fault, and the cycles until its target served again.
    pub fn record(&mut self, target: &'static str, fault: Fault, recovery: Option<u64>) {
        self.injected.push((target, fault));
        match recovery {
            Some(cycles) => self.recoveries.push(cycles),
            None => self.lost += 1,
        }
    }

    /// When the campaign began and ended: (ms, cycles) each.
    pub fn set_clock(&mut self, began: (u64, u64), ended: (u64, u64)) {
        self.clock = (began, ended);
    }

    /// The workload's and the chatter's counts.
    pub fn add_workload(&mut self, outcome: &Outcome, chatter: (u32, u64)) {
        self.workload = *outcome;
        self.chatter = chatter;
    }

    /// The supervisor's restart count.
    pub fn set_restarts(&mut self, restarts: u32) {
        self.restarts = restarts;
    }

    /// Cycles per millisecond, from the campaign's own span.
    fn cycles_per_ms(&self) -> u64 {
        let ((began_ms, began_cycles), (ended_ms, ended_cycles)) = self.clock;
        (ended_cycles - began_cycles) / (ended_ms - began_ms).max(1)
    }

    /// Prints the report.
    pub fn print(&self) {
        let per_ms = self.cycles_per_ms().max(1) as f64;
        let mut sorted = self.recoveries.clone();
        sorted.sort_unstable();
        let at = |fraction: f64| -> f64 {
            match sorted.len() {
                0 => 0.0,
                length => sorted[((length - 1) as f64 * fraction) as usize] as f64 / per_ms,
            }
        };
        let (minimum, median, p99, maximum) = (at(0.0), at(0.5), at(0.99), at(1.0));
        let by_type: Vec<(&str, usize)> = Fault::ALL
            .iter()
            .map(|fault| (fault.name(), self.injected.iter().filter(|(_, f)| f == fault).count()))
            .collect();
        let mut targets: Vec<&str> = self.injected.iter().map(|(target, _)| *target).collect();
        targets.sort_unstable();
        targets.dedup();
        let by_target: Vec<(&str, usize)> = targets
            .iter()
            .map(|target| (*target, self.injected.iter().filter(|(t, _)| t == target).count()))
            .collect();
        let list = |pairs: &[(&str, usize)]| join(pairs, |name, count| format!("{name} {count}"));
        let errors = self.workload.errors + self.chatter.0;
        println!("faultinj: report (seed {}, {} asked)", self.seed, self.count);
        println!("faultinj: faults injected: {}", self.injected.len());
        println!("faultinj:   by type: {}", list(&by_type));
        println!("faultinj:   by target: {}", list(&by_target));
        println!("faultinj: restarts: {}", self.restarts);
        println!(
            "faultinj: client-visible errors: {errors} (fs workload {}, serial and pci calls {} of {})",
            self.workload.errors, self.chatter.0, self.chatter.1
        );
        println!("faultinj: data mismatches: {}", self.workload.mismatches);
        println!(
            "faultinj: workload: {} writes acknowledged, {} reads verified, {} files verified at the end",
            self.workload.writes, self.workload.reads, self.workload.final_files
        );
        println!(
            "faultinj: recovery ms (injection to the next served request): min {minimum:.2}, median {median:.2}, \
             p99 {p99:.2}, max {maximum:.2}; {} did not recover in time",
            self.lost
        );
        let json_pairs = |pairs: &[(&str, usize)]| join(pairs, |name, count| format!("\"{name}\": {count}"));
        let json: String = format!(
            "{{\"seed\": {}, \"faults\": {}, \"by_type\": {{{}}}, \"by_target\": {{{}}}, \"restarts\": {}, \
             \"client_errors\": {errors}, \"mismatches\": {}, \"writes\": {}, \"reads\": {}, \
             \"unrecovered\": {}, \"recovery_ms\": {{\"min\": {minimum:.3}, \"median\": {median:.3}, \
             \"p99\": {p99:.3}, \"max\": {maximum:.3}}}}}",
            self.seed,
            self.injected.len(),
            json_pairs(&by_type),
            json_pairs(&by_target),
            self.restarts,
            self.workload.mismatches,
            self.workload.writes,
            self.workload.reads,
            self.lost,
        );
        println!("faultinj-json: {json}");
    }
}

/// `pairs`, each written by `write`, separated by commas.
fn join(pairs: &[(&str, usize)], write: impl Fn(&str, usize) -> String) -> String {
    pairs
        .iter()
        .map(|&(name, count)| write(name, count))
        .collect::<Vec<_>>()
        .join(", ")
}
