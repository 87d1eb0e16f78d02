//! The sbatch templates on a real single-node Slurm (scripts/local-slurm.sh:
//! munged, slurmctld and slurmd on localhost, MpiDefault=none as on many
//! clusters), in native mode with tiny sizes: each job is submitted the way
//! users do, waited for (1 s polling, bounded), and judged by its output file,
//! its JSON record and its exit code. A trainer template is also stopped as
//! its time limit would stop it (SIGUSR1 to the batch shell), and must
//! checkpoint, requeue itself and resume. The daemons stop when the test ends,
//! also when it fails. Needs root (slurmd); HPCML_SKIP_SLURM=1 skips it
//! on machines where that is impossible.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bin_dir() -> PathBuf {
    common::exe("pi-mpi").parent().unwrap().to_path_buf()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A running local Slurm; dropping it stops the daemons.
struct Slurm {
    dir: tempfile::TempDir,
}

impl Slurm {
    fn up() -> Slurm {
        // In /tmp whatever TMPDIR says: Slurm and munge put unix sockets in
        // there, whose paths may not exceed 107 bytes.
        let dir = tempfile::Builder::new().prefix("hpcml-slurm-").tempdir_in("/tmp").unwrap();
        let slurm = Slurm { dir };
        // 4 CPUs on any machine, so the jobs below can run side by side; and
        // the daemons go down with this process even if it is killed.
        let owner = std::process::id().to_string();
        let out = slurm.script(&["up"], 180, &[("LS_CPUS", "4"), ("LS_OWNER", &owner)]);
        assert!(out.status.success(), "local-slurm.sh up failed:\n{}", text(&out));
        slurm
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("etc/slurm.conf")
    }

    fn submit_dir(&self) -> PathBuf {
        let d = self.dir.path().join("submit");
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn script(&self, args: &[&str], secs: u64, env: &[(&str, &str)]) -> Output {
        let mut c = Command::new("timeout");
        c.args(["--kill-after=10", &secs.to_string()]).arg(root().join("scripts/local-slurm.sh")).args(args);
        c.env("LS_ROOT", self.dir.path());
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    /// A Slurm client command against this instance, with a time limit.
    fn client(&self, prog: &str, args: &[&str]) -> Output {
        Command::new("timeout")
            .args(["--kill-after=5", "60", prog])
            .args(args)
            .env("SLURM_CONF", self.conf())
            .output()
            .unwrap()
    }

    /// `sbatch --parsable ARGS` from the submit directory, with extra environment.
    fn sbatch(&self, args: &[String], env: &[(String, String)]) -> String {
        let mut c = Command::new("timeout");
        c.args(["--kill-after=5", "60", "sbatch", "--parsable"]).args(args);
        c.current_dir(self.submit_dir()).env("SLURM_CONF", self.conf()).env("HPCML_PROGRESS", "off");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "sbatch {args:?} failed:\n{}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().split(';').next().unwrap().to_string()
    }

    /// Waits for the job to end; (final state, exit code "N:S").
    fn wait(&self, job: &str, secs: u64) -> (String, String) {
        let out = self.script(&["wait", job, &secs.to_string()], secs + 30, &[]);
        let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let (state, code) = said.split_once(' ').unwrap_or_else(|| panic!("wait {job}: {}", text(&out)));
        (state.to_string(), code.to_string())
    }

    fn field(&self, job: &str, name: &str) -> String {
        let out = self.client("scontrol", &["-o", "show", "job", job]);
        let line = String::from_utf8_lossy(&out.stdout).to_string();
        let key = format!(" {name}=");
        let at = line.find(&key).unwrap_or_else(|| panic!("no {name} in: {line}"));
        line[at + key.len()..].split_whitespace().next().unwrap_or("").to_string()
    }

    fn output(&self, file: &str) -> String {
        fs::read_to_string(self.submit_dir().join(file)).unwrap_or_default()
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        let out = self.script(&["down"], 120, &[]);
        if !out.status.success() {
            eprintln!("local-slurm.sh down failed:\n{}", text(&out));
        }
    }
}

/// A finished job, for the checks.
struct Job {
    id: String,
    state: String,
    exit: String,
    /// The -o file.
    out: String,
}

impl Job {
    /// The run's output directory, as the template logged it.
    fn out_dir(&self) -> Result<PathBuf, String> {
        let line = self.out.lines().find(|l| l.starts_with("[hpcml] output: ")).ok_or("no [hpcml] output: line")?;
        Ok(PathBuf::from(line.trim_start_matches("[hpcml] output: ")))
    }

    /// What every template's run must show: COMPLETED 0:0, one MPI job
    /// through `srun --mpi=pmi2`, its outputs in $SCRATCH/hpcml-runs/NAME-JOBID
    /// (returned).
    fn completed(&self, scratch: &Path, name: &str) -> Result<PathBuf, String> {
        ensure(self.state == "COMPLETED" && self.exit == "0:0", format!("state {} exit {}", self.state, self.exit))?;
        ensure(self.out.contains("[hpcml] launcher: srun --mpi=pmi2"), "launcher line")?;
        ensure(self.out.contains("[hpcml] exit status 0\n"), "the template's exit line")?;
        ensure(!self.out.contains("panicked"), "a panic")?;
        let dir = self.out_dir()?;
        let want = scratch.join(format!("hpcml-runs/{name}-{}", self.id));
        ensure(dir == want, format!("output in {}, not under $SCRATCH as {}", dir.display(), want.display()))?;
        Ok(dir)
    }

    /// How many lines of the log start with `start`.
    fn lines_starting(&self, start: &str) -> usize {
        self.out.lines().filter(|l| l.starts_with(start)).count()
    }
}

/// A JSON record a job wrote.
fn record(path: &Path) -> Result<serde_json::Value, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// A plot a job wrote: a PNG with something drawn in it.
fn png(path: &Path) -> Result<(), String> {
    let bytes = fs::read(path).unwrap_or_default();
    ensure(bytes.len() > 5_000 && bytes.starts_with(b"\x89PNG\r\n\x1a\n"), format!("{}: no PNG plot", path.display()))
}

/// A file a job wrote, not empty (checkpoints, models).
fn nonempty(path: &Path) -> Result<(), String> {
    let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    ensure(len > 0, format!("{}: missing or empty", path.display()))
}

/// One template submitted as users do, in native mode with tiny sizes; every
/// template has at least one entry in `cases()`.
struct Case {
    template: &'static str,
    /// Options and script arguments as typed after `sbatch`, around the template.
    before: Vec<&'static str>,
    after: Vec<&'static str>,
    env: Vec<(&'static str, String)>,
    /// The -o file's name for job id N is `{log}{N}`.
    log: &'static str,
    check: fn(&Job, &Path) -> Result<(), String>,
}

fn ensure(ok: bool, what: impl Into<String>) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what.into())
    }
}

fn cases(scratch: &Path) -> Vec<Case> {
    vec![
        Case {
            template: "pi.sbatch",
            before: vec!["-p", "debug", "-N", "1", "-n", "2", "-t", "5"],
            after: vec![],
            env: vec![
                ("PI_ARGS", "2e7 --seed 7 --threads 1".into()),
                ("HPCML_BIN_DIR", bin_dir().display().to_string()),
                ("SCRATCH", scratch.display().to_string()),
            ],
            log: "hpcml-pi.o",
            check: check_pi,
        },
        Case {
            // Script arguments replace PI_ARGS; a usage error is exit code 2.
            template: "pi.sbatch",
            before: vec!["-p", "normal", "-N", "1", "-n", "1", "-t", "5", "-J", "pi-bad"],
            after: vec!["ten"],
            env: vec![("HPCML_BIN_DIR", bin_dir().display().to_string())],
            log: "hpcml-pi.o",
            check: check_pi_usage_error,
        },
        // The GPU templates on a node without GPUs: --gres=none (this Slurm has
        // no GPU GRES), and the templates pick the CPU.
        Case {
            template: "matmul.sbatch",
            before: gpu_before(),
            after: vec![],
            env: vec![
                ("MATMUL_ARGS", "--sizes 256,512 --dtype f32 --repeats 2 --threads 1".into()),
                ("HPCML_BIN_DIR", bin_dir().display().to_string()),
                ("SCRATCH", scratch.display().to_string()),
            ],
            log: "hpcml-matmul.o",
            check: check_matmul,
        },
        Case {
            template: "mnist.sbatch",
            before: gpu_before(),
            after: vec![],
            env: vec![
                // 21 steps of the offline sample: evaluations at steps 0 and 20.
                ("MNIST_ARGS", "--sample --epochs 0.3 --threads 1".into()),
                ("HPCML_BIN_DIR", bin_dir().display().to_string()),
                ("SCRATCH", scratch.display().to_string()),
            ],
            log: "hpcml-mnist.o",
            check: check_mnist,
        },
        Case {
            template: "bert.sbatch",
            before: gpu_before(),
            after: vec![],
            env: vec![
                ("BERT_SOURCE", bert_data(&scratch.join("bert-data")).display().to_string()),
                // The offline MiniLM; 4 steps of 8 texts, validation after 2 and 4.
                ("BERT_ARGS", "--epochs 1 --max-len 24 --batch-size 8 --lr 1e-4 --threads 1".into()),
                ("HPCML_BIN_DIR", bin_dir().display().to_string()),
                ("SCRATCH", scratch.display().to_string()),
            ],
            log: "hpcml-bert.o",
            check: check_bert,
        },
    ]
}

/// How the GPU templates are submitted here: 2 ranks on the one node, no GRES.
fn gpu_before() -> Vec<&'static str> {
    vec!["-p", "debug", "-N", "1", "-n", "2", "-t", "10", "--gres=none"]
}

/// A labelled data directory in the tutorial's layout (label,titletext) whose
/// two classes share no word: fruit is ham, car parts are spam.
fn bert_data(dir: &Path) -> PathBuf {
    const HAM: [&str; 8] = ["apple", "banana", "cherry", "grape", "lemon", "mango", "peach", "plum"];
    const SPAM: [&str; 8] = ["engine", "wheel", "brake", "gear", "clutch", "piston", "valve", "axle"];
    fs::create_dir_all(dir).unwrap();
    for (file, rows, seed) in [("train.csv", 32, 1), ("valid.csv", 8, 2), ("test.csv", 8, 3)] {
        let mut csv = String::from("label,titletext\n");
        for i in 0..rows {
            let (label, words) = if i % 2 == 0 { ("ham", &HAM) } else { ("spam", &SPAM) };
            let text: Vec<&str> = (0..4 + (i + seed) % 3).map(|k| words[(i * 5 + k * 3 + seed) % 8]).collect();
            csv += &format!("{label},{}\n", text.join(" "));
        }
        fs::write(dir.join(file), csv).unwrap();
    }
    dir.to_path_buf()
}

fn check_pi(job: &Job, scratch: &Path) -> Result<(), String> {
    let dir = job.completed(scratch, "pi")?;
    // Two ranks of one MPI job, not two 1-rank jobs (srun without --mpi=pmi2).
    ensure(job.out.contains("Computing 10000000 samples on each of the 2 ranks"), "not one 2-rank job")?;
    ensure(job.out.matches("] Local Estimate: 3.1").count() == 2, "not two rank lines")?;
    ensure(job.out.contains("-0] Local Estimate") && job.out.contains("-1] Local Estimate"), "ranks 0 and 1")?;
    ensure(job.out.matches("Final Estimate: 3.14").count() == 1, "one Final Estimate")?;
    let json = record(&dir.join("pi.json"))?;
    ensure(json["ranks"] == 2 && json["samples"] == 20_000_000, format!("pi.json: {json}"))?;
    // Bit-identical to a single process with the same seed.
    let one = tempfile::tempdir().unwrap();
    let p = one.path().join("pi.json");
    common::run("pi-mpi", &["2e7", "--seed", "7", "--threads", "1", "--json", p.to_str().unwrap()], 120).ok();
    ensure(common::json(&p)["hits"] == json["hits"], "hits differ from a 1-process run")
}

fn check_matmul(job: &Job, scratch: &Path) -> Result<(), String> {
    let dir = job.completed(scratch, "matmul")?;
    ensure(job.out.contains(" --threads 1 --no-gpu --json "), "no GPU here: the template passes --no-gpu")?;
    // One 2-rank job (two 1-rank programs would each print Ranks: 1), and for
    // each size a row per rank and the rank-summed row, in the log and the table.
    ensure(job.lines_starting("Ranks: 2 on 1 node(s)") == 1, "not one 2-rank job")?;
    ensure(job.lines_starting("Using device: cpu") == 1, "Using device: cpu")?;
    for size in ["256x256", "512x512"] {
        let test = format!("Running test for matrix size: {size} (f32 on cpu");
        ensure(job.lines_starting(&test) == 1, format!("one test of {size}"))?;
        let table_row = |who: &str, what: &str| {
            job.out
                .lines()
                .filter(|l| l.starts_with(&format!("│ {who}")) && l.contains(size) && l.contains(what))
                .count()
        };
        ensure(table_row("job  │", "sum of 2/2 ranks") == 1, format!("the table's job row for {size}"))?;
        ensure(table_row("", " f32 ") == 3, format!("the table's 3 rows for {size}"))?;
    }
    for rank in 0..2 {
        let rows = job
            .out
            .lines()
            .filter(|l| l.starts_with('[') && l.contains(&format!("-{rank}] Time: ")) && l.ends_with(" entries)"));
        ensure(rows.count() == 2, format!("two checked rows of rank {rank}"))?;
    }
    ensure(job.lines_starting("Job (2 of 2 ranks ran): ") == 2, "the aggregate row of each size")?;

    let json = record(&dir.join("matmul.json"))?;
    let cells = json["cells"].as_array().map(Vec::len);
    let ranks = json["ranks"].as_array().map(Vec::len);
    ensure(
        cells == Some(2) && ranks == Some(2) && json["cells_ok"] == 4 && json["cells_failed"] == 0,
        format!("matmul.json: {json}"),
    )?;
    for cell in json["cells"].as_array().into_iter().flatten() {
        let job_gflops = cell["job"]["gflops"].as_f64().unwrap_or(0.0);
        ensure(cell["job"]["ranks_ok"] == 2 && job_gflops > 0.0, format!("matmul.json cell: {cell}"))?;
    }
    let csv = fs::read_to_string(dir.join("matmul.csv")).unwrap_or_default();
    let scope = |s: &str| csv.lines().filter(|l| l.starts_with(&format!("{s},"))).count();
    ensure(scope("rank") == 4 && scope("job") == 2, format!("matmul.csv:\n{csv}"))?;
    png(&dir.join("scaling_plot.png"))
}

fn check_mnist(job: &Job, scratch: &Path) -> Result<(), String> {
    let dir = job.completed(scratch, "mnist")?;
    ensure(job.out.contains(" --device cpu --output "), "no GPU here: the template passes --device cpu")?;
    let training = job.out.lines().find(|l| l.starts_with("Training on ")).unwrap_or("");
    ensure(
        job.lines_starting("Training on ") == 1 && training.starts_with("Training on 2 ranks x 1 thread, cpu"),
        "not one 2-rank job",
    )?;
    ensure(training.contains(" 21 steps (0.3 epochs)"), format!("21 steps: {training}"))?;
    // The tutorial's log: an evaluation at the first and at the last step.
    let steps: Vec<&str> = job.out.lines().filter(|l| l.starts_with("Step ") && l.contains(" (epoch ")).collect();
    ensure(
        steps.len() == 2
            && steps[0].starts_with("Step 0 (epoch 0.00), ")
            && steps[1].starts_with("Step 20 (epoch 0.28), "),
        format!("Step lines: {steps:?}"),
    )?;
    ensure(job.lines_starting("Validation error: ") == 2, "a Validation error line per evaluation")?;
    ensure(job.lines_starting("Test error: ") == 1, "one Test error line")?;

    let json = record(&dir.join("mnist.json"))?;
    let test = json["test_error"].as_f64().unwrap_or(100.0);
    ensure(json["ranks"] == 2 && json["steps"] == 21 && json["stopped_by"].is_null(), format!("mnist.json: {json}"))?;
    // 21 steps already learn (90% is chance): a sign the ranks train together.
    ensure(test < 60.0, format!("test error {test}% after 21 steps"))?;
    ensure(record(&dir.join("metrics.json"))?["steps"] == 21, "metrics.json")?;
    record(&dir.join("config.json"))?;
    nonempty(&dir.join("checkpoint.safetensors"))?;
    png(&dir.join("training.png"))
}

fn check_bert(job: &Job, scratch: &Path) -> Result<(), String> {
    let dir = job.completed(scratch, "bert")?;
    ensure(job.out.contains(" --device cpu --resume "), "no GPU here: the template passes --device cpu")?;
    let running = "Running on cpu (fp32), 1 thread(s) per rank, 2 rank(s) on 1 node(s); batch 8, 4 steps";
    ensure(job.lines_starting("Running on ") == 1 && job.lines_starting(running) == 1, "not one 2-rank job")?;
    ensure(job.lines_starting("Start Training...") == 1, "Start Training...")?;
    for step in ["Step [2/4], Train Loss: ", "Step [4/4], Train Loss: "] {
        ensure(job.lines_starting(&format!("Epoch [1/1], {step}")) == 1, format!("Epoch [1/1], {step}"))?;
    }
    let saved = format!("Model saved to ==> {}", dir.join("model.safetensors").display());
    ensure(job.lines_starting(&saved) >= 1, saved)?;
    ensure(job.lines_starting("Finished Training!") == 1, "Finished Training!")?;
    // The classification report, sklearn's layout, with the class names.
    let report = job.out.split_once("Classification Report:\n").map(|(_, r)| r).unwrap_or("");
    ensure(report.starts_with("              precision    recall  f1-score   support"), "the classification report")?;
    for row in ["         ham ", "        spam ", "    accuracy ", "weighted avg "] {
        ensure(report.lines().any(|l| l.starts_with(row)), format!("report row '{}'", row.trim()))?;
    }

    let json = record(&dir.join("results.json"))?;
    let accuracy = json["test"]["accuracy"].as_f64().unwrap_or(0.0);
    ensure(json["test"]["rows"] == 8 && json["steps"] == 4, format!("results.json: {json}"))?;
    // The two classes share no word: one epoch separates them.
    ensure(accuracy >= 0.75, format!("test accuracy {accuracy}"))?;
    let txt = fs::read_to_string(dir.join("classification_report.txt")).unwrap_or_default();
    ensure(!txt.is_empty() && report.starts_with(&txt), "classification_report.txt is the logged report")?;
    for f in ["model.safetensors", "checkpoint.safetensors", "tokenizer.json"] {
        nonempty(&dir.join(f))?;
    }
    ensure(record(&dir.join("config.json"))?["id2label"]["1"] == "spam", "config.json: id2label")?;
    png(&dir.join("loss_v_global_steps.png"))?;
    png(&dir.join("confusion_matrix.png"))
}

fn check_pi_usage_error(job: &Job, _: &Path) -> Result<(), String> {
    ensure(job.state == "FAILED" && job.exit == "2:0", format!("state {} exit {}", job.state, job.exit))?;
    let error = job.out.lines().find(|l| l.starts_with("pi-mpi: error: ")).unwrap_or("");
    ensure(error.contains("SAMPLES must be a positive whole number"), "the one-line usage error")?;
    ensure(job.out.contains("[hpcml] exit status 2"), "the template's exit line")?;
    ensure(!job.out.contains("panicked"), "a panic")
}

/// A batch script with the trainer templates' logic (slurm/common.sh's
/// hpcml_run_trainer) around the real pi-mpi: the shell's part alone, which
/// the real trainer template then shows with mnist-cnn.
fn trainer_script(dir: &Path, name: &str, pi_args: &str) -> PathBuf {
    let path = dir.join(format!("{name}.sbatch"));
    let body = format!(
        "#!/bin/bash\n#SBATCH -J {name}\n#SBATCH -o {name}.o%j\n#SBATCH -t 5\n#SBATCH --requeue\n#SBATCH --open-mode=append\n\
         set -euo pipefail\n. \"$HPCML_SLURM_DIR/common.sh\"\nhpcml_setup {name}\n\
         hpcml_run_trainer pi-mpi {pi_args} --json \"$HPCML_OUT/pi.json\"\n"
    );
    fs::write(&path, body).unwrap();
    path
}

/// Waits until the job runs a step of its own (srun's `JOB.0`), beyond the batch step.
fn wait_for_step(slurm: &Slurm, job: &str, secs: u64) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(secs) {
        let out = slurm.client("squeue", &["-h", "-s", "-j", job, "-o", "%i"]);
        let steps = String::from_utf8_lossy(&out.stdout).to_string();
        if steps.lines().any(|l| l.trim().strip_prefix(&format!("{job}.")).is_some_and(|n| n.parse::<u32>().is_ok())) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// Waits until all `ranks` tasks of the job's first step catch SIGUSR1, which
/// MPICH's MPI_Init arranges: then they are inside MPI and a forwarded USR1 no
/// longer kills them (before MPI_Init it would, as the default action).
fn wait_for_ranks_in_mpi(slurm: &Slurm, job: &str, ranks: usize, secs: u64) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(secs) {
        let out = slurm.client("scontrol", &["listpids", job]);
        let tasks: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() >= 4 && f[2] == "0" && f[3].parse::<u32>().is_ok()).then(|| f[0].to_string())
            })
            .collect();
        let catches_usr1 = |pid: &String| {
            let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let mask = status.lines().find_map(|l| l.strip_prefix("SigCgt:")).unwrap_or("0").trim().to_string();
            u64::from_str_radix(&mask, 16).is_ok_and(|m| m & (1 << (10 - 1)) != 0)
        };
        if tasks.len() == ranks && tasks.iter().all(catches_usr1) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Waits until the job's log has a line that starts with `start`.
fn wait_for_line(slurm: &Slurm, log: &str, start: &str, secs: u64) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(secs) {
        if slurm.output(log).lines().any(|l| l.starts_with(start)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// `scancel ARGS JOB`, once the job got `ready`; what went wrong otherwise.
fn scancel_when(slurm: &Slurm, ready: bool, args: &[&str], job: &str, log: &str) -> Result<(), String> {
    ensure(ready, format!("job {job} never got to where it can be signalled:\n{}", slurm.output(log)))?;
    let mut all = args.to_vec();
    all.push(job);
    let out = slurm.client("scancel", &all);
    ensure(out.status.success(), format!("scancel {all:?}: {}", text(&out)))
}

/// Waits for a job whose batch shell got SIGUSR1 (what `--signal=B:USR1@120`
/// sends) and checks the trainer logic did its part: forwarded the signal, saw
/// the step exit 0, requeued the job once, which ran again from the top into
/// the same output directory and COMPLETED 0:0. Returns the log of both runs
/// (--open-mode=append).
fn requeued_once(slurm: &Slurm, job: &str, log: &str, secs: u64) -> Result<String, String> {
    let (state, exit) = slurm.wait(job, secs);
    let out = slurm.output(log);
    let restarts = slurm.field(job, "Restarts");
    let runs: Vec<&str> = out.lines().filter(|l| l.starts_with("[hpcml] output: ")).collect();
    let ok = state == "COMPLETED"
        && exit == "0:0"
        && restarts == "1"
        && out.contains("[hpcml] received SIGUSR1: forwarding it to the job step")
        && out.contains("[hpcml] exit status 0 after SIGUSR1\n")
        && out.contains(&format!("[hpcml] requeueing job {job} (restart 1)"))
        && out.contains(", restart 0\n")
        && out.contains(", restart 1\n")
        && runs.len() == 2
        && runs[0] == runs[1];
    ensure(
        ok,
        format!("job {job}: state {state} exit {exit} restarts {restarts}, not requeued once\n--- output:\n{out}"),
    )?;
    Ok(out)
}

/// The mnist trainer stopped by SIGUSR1 in its first run: it saved a
/// checkpoint there, and the requeued run resumed from it (not from scratch)
/// and finished training.
fn check_mnist_resumed(out: &str, dir: &Path) -> Result<(), String> {
    let checkpoint = dir.join("checkpoint.safetensors");
    let stopped =
        out.lines().find(|l| l.starts_with("Stopped by SIGUSR1 after step ")).ok_or("no checkpoint on SIGUSR1")?;
    let step: u64 = stopped["Stopped by SIGUSR1 after step ".len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or(format!("no step in: {stopped}"))?;
    ensure(stopped.contains(&format!("checkpoint saved to {}", checkpoint.display())), stopped.to_string())?;
    ensure(out.lines().filter(|l| l.starts_with("No checkpoint in ")).count() == 1, "one fresh start")?;
    let resumed = format!("Resuming from {} at step {}.", checkpoint.display(), step + 1);
    let (before, after) = out.split_once(&resumed).ok_or(format!("no '{resumed}'"))?;
    ensure(before.contains(stopped), "the stop before the resume")?;
    ensure(!before.contains("Test error: "), "a Test error line before the signal")?;
    ensure(
        after.lines().filter(|l| l.starts_with("Test error: ")).count() == 1,
        "one Test error line after the resume",
    )?;
    ensure(after.lines().any(|l| l.starts_with("Step 139 (epoch ")), "the last step, 139")?;
    let json = record(&dir.join("mnist.json"))?;
    ensure(
        json["steps"] == 140 && json["first_step"] == step + 1 && json["ranks"] == 2 && json["stopped_by"].is_null(),
        format!("mnist.json after the restart: {json}"),
    )?;
    png(&dir.join("training.png"))
}

#[test]
fn sbatch_templates_run_on_a_real_slurm() {
    if std::env::var("HPCML_SKIP_SLURM").as_deref() == Ok("1") {
        eprintln!("HPCML_SKIP_SLURM=1: not starting Slurm");
        return;
    }
    let slurm = Slurm::up();
    let submit = slurm.submit_dir();
    let scratch = slurm.dir.path().join("scratch");
    let mut problems = Vec::new();

    // The trainer logic first: its USR1 must land while pi-mpi runs.
    let env_common = vec![
        ("HPCML_SLURM_DIR".to_string(), root().join("slurm").display().to_string()),
        ("HPCML_BIN_DIR".to_string(), bin_dir().display().to_string()),
    ];
    // A second or two of work per rank on one core: long enough to be signalled in.
    let usr1 = trainer_script(&submit, "usr1", "4e9 --seed 11 --threads 1");
    let usr1_job = slurm.sbatch(&["-n".into(), "2".into(), usr1.display().to_string()], &env_common);
    let cancel = trainer_script(&submit, "cancel", "1e13 --threads 1");
    let cancel_job = slurm.sbatch(&["-n".into(), "1".into(), cancel.display().to_string()], &env_common);
    // The real trainer template the same way: 140 steps of mnist-cnn on 2
    // ranks, a checkpoint every 10, signalled once training runs.
    let mut args: Vec<String> = gpu_before().iter().map(|s| s.to_string()).collect();
    args.extend(["-J".into(), "mnist-requeue".into(), root().join("slurm/mnist.sbatch").display().to_string()]);
    let requeue_env = [
        ("MNIST_ARGS", "--sample --epochs 2 --eval-frequency 10 --threads 1".to_string()),
        ("HPCML_BIN_DIR", bin_dir().display().to_string()),
        ("SCRATCH", scratch.display().to_string()),
    ];
    let requeue_env: Vec<(String, String)> = requeue_env.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let mnist_job = slurm.sbatch(&args, &requeue_env);

    let mut submitted = Vec::new();
    for case in cases(&scratch) {
        let mut args: Vec<String> = case.before.iter().map(|s| s.to_string()).collect();
        args.push(root().join("slurm").join(case.template).display().to_string());
        args.extend(case.after.iter().map(|s| s.to_string()));
        let env: Vec<(String, String)> = case.env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let id = slurm.sbatch(&args, &env);
        submitted.push((case, id));
    }

    // What `#SBATCH --signal=B:USR1@120` does near the time limit: USR1 to the
    // batch shell only. The shell forwards it to the job step. pi-mpi, once in
    // MPI, lives on (MPICH's MPI_Init installs a SIGUSR1 handler of its own),
    // ends with exit 0 like a trainer that checkpointed, and so the job requeues
    // itself and runs again from the top with SLURM_RESTART_COUNT=1.
    let usr1_log = format!("usr1.o{usr1_job}");
    let ready = wait_for_ranks_in_mpi(&slurm, &usr1_job, 2, 60);
    problems.extend(scancel_when(&slurm, ready, &["--signal=USR1", "--batch"], &usr1_job, &usr1_log).err());
    // scancel sends TERM: the job must end, cancelled, and not requeue itself.
    let cancel_log = format!("cancel.o{cancel_job}");
    let ready = wait_for_step(&slurm, &cancel_job, 60);
    problems.extend(scancel_when(&slurm, ready, &[], &cancel_job, &cancel_log).err());
    // The trainer's handler is in place before its first log line; USR1 once
    // the first evaluation (a checkpoint) is out, with 130 steps to go.
    let mnist_log = format!("hpcml-mnist.o{mnist_job}");
    let ready = wait_for_line(&slurm, &mnist_log, "Validation error: ", 180);
    problems.extend(scancel_when(&slurm, ready, &["--signal=USR1", "--batch"], &mnist_job, &mnist_log).err());

    for (case, id) in &submitted {
        let (state, exit) = slurm.wait(id, 180);
        let job = Job { id: id.clone(), state, exit, out: slurm.output(&format!("{}{id}", case.log)) };
        if let Err(e) = (case.check)(&job, &scratch) {
            problems.push(format!("{} (job {id}): {e}\n--- output:\n{}", case.template, job.out));
        }
    }

    match requeued_once(&slurm, &usr1_job, &usr1_log, 120) {
        Ok(out) if out.matches("Final Estimate: 3.14").count() == 2 => {}
        Ok(out) => problems.push(format!("usr1 job {usr1_job}: not two Final Estimates\n--- output:\n{out}")),
        Err(e) => problems.push(format!("usr1 {e}")),
    }
    let mnist_dir = scratch.join(format!("hpcml-runs/mnist-{mnist_job}"));
    match requeued_once(&slurm, &mnist_job, &mnist_log, 240) {
        Ok(out) => {
            let resumed = ensure(out.contains(&format!("[hpcml] output: {}\n", mnist_dir.display())), "output dir")
                .and_then(|()| check_mnist_resumed(&out, &mnist_dir));
            if let Err(e) = resumed {
                problems.push(format!("mnist.sbatch requeue (job {mnist_job}): {e}\n--- output:\n{out}"));
            }
        }
        Err(e) => problems.push(format!("mnist.sbatch requeue {e}")),
    }

    let (state, _) = slurm.wait(&cancel_job, 120);
    let out = slurm.output(&cancel_log);
    let restarts = slurm.field(&cancel_job, "Restarts");
    if state != "CANCELLED"
        || restarts != "0"
        || !out.contains("[hpcml] received SIGTERM")
        || out.contains("[hpcml] requeueing")
    {
        problems.push(format!("cancel job {cancel_job}: state {state} restarts {restarts}\n--- output:\n{out}"));
    }

    drop(slurm);
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// The templates themselves, read as text and run through bash's parser: the
/// header fields TACC users expect, GPU and trainer directives where they belong.
#[test]
fn templates_carry_the_tutorial_header_and_parse() {
    for name in ["pi", "matmul", "mnist", "bert"] {
        let path = root().join(format!("slurm/{name}.sbatch"));
        let body = fs::read_to_string(&path).unwrap();
        let header: Vec<&str> = body.lines().take_while(|l| l.starts_with('#')).collect();
        for opt in ["-J ", "-o ", "-p ", "-N ", "-n ", "-t "] {
            assert!(header.iter().any(|l| l.starts_with(&format!("#SBATCH {opt}"))), "{name}: no #SBATCH {opt}");
        }
        assert!(header.iter().any(|l| l.contains("-o hpcml-") && l.contains("%j")), "{name}: -o with %j");
        assert!(header.iter().any(|l| l.starts_with("##SBATCH --reservation")), "{name}: commented --reservation");
        let gpu = name != "pi";
        assert_eq!(header.iter().any(|l| l.starts_with("#SBATCH --gres=gpu:")), gpu, "{name}: --gres");
        let trainer = name == "mnist" || name == "bert";
        for opt in ["#SBATCH --signal=B:USR1@", "#SBATCH --requeue", "#SBATCH --open-mode=append"] {
            assert_eq!(header.iter().any(|l| l.starts_with(opt)), trainer, "{name}: {opt}");
        }
        assert_eq!(body.contains("hpcml_run_trainer "), trainer, "{name}: trainer logic");
        assert_eq!(body.contains("--resume"), trainer, "{name}: --resume");
        let out = Command::new("bash").arg("-n").arg(&path).output().unwrap();
        assert!(out.status.success(), "{name}: {}", text(&out));
    }
}

/// Outside Slurm the templates fall back to mpiexec, so a laptop can run them
/// as they are; a missing binary is one clear line and exit code 2.
#[test]
fn pi_template_runs_outside_slurm_with_mpiexec() {
    let dir = tempfile::tempdir().unwrap();
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let mut c = Command::new("timeout");
        c.args(["--kill-after=5", "120", "bash"]).arg(root().join("slurm/pi.sbatch")).args(args);
        c.current_dir(dir.path()).env("HPCML_PROGRESS", "off").env("HPCML_RANKS", "2");
        for var in ["SLURM_JOB_ID", "SCRATCH", "HPCML_OUT", "HPCML_SIF", "HPCML_LAUNCHER"] {
            c.env_remove(var);
        }
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    // A relative HPCML_BIN_DIR means the directory the job was started in.
    std::os::unix::fs::symlink(bin_dir(), dir.path().join("bins")).unwrap();
    let out = run(&[("HPCML_BIN_DIR", "bins")], &["1e6", "--seed", "2", "--threads", "1"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("[hpcml] launcher: mpiexec -n 2"), "{said}");
    assert!(said.contains("on each of the 2 ranks"), "{said}");
    let dir_line = said.lines().find(|l| l.starts_with("[hpcml] output: ")).unwrap();
    let out_dir = PathBuf::from(dir_line.trim_start_matches("[hpcml] output: "));
    assert!(out_dir.starts_with(dir.path().canonicalize().unwrap().join("hpcml-runs")), "{said}");
    assert_eq!(common::json(&out_dir.join("pi.json"))["ranks"], 2);

    let out = run(&[("HPCML_BIN_DIR", "/nonexistent")], &["1e6"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("[hpcml] error: pi-mpi not found in HPCML_BIN_DIR=/nonexistent"), "{said}");
}

/// The GPU templates' check of ranks against GPUs, on the node's view of them
/// (Slurm's GRES count, else CUDA_VISIBLE_DEVICES), and the device it picks.
#[test]
fn gpu_templates_map_one_rank_per_gpu_or_say_why_not() {
    let map = |env: &[(&str, &str)]| {
        let mut c = Command::new("bash");
        c.arg("-c").arg(". slurm/common.sh && HPCML_GPU=gpu && hpcml_map_gpus && echo \"device=$HPCML_DEVICE\"");
        c.current_dir(root());
        for var in [
            "SLURM_GPUS_ON_NODE",
            "CUDA_VISIBLE_DEVICES",
            "SLURM_NTASKS_PER_NODE",
            "SLURM_TASKS_PER_NODE",
            "HPCML_DEVICE",
        ] {
            c.env_remove(var);
        }
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        text(&out)
    };
    let said = map(&[("SLURM_GPUS_ON_NODE", "4"), ("SLURM_TASKS_PER_NODE", "4(x2)")]);
    assert!(said.contains("one rank per GPU: local rank i uses GPU i of 4") && said.contains("device=cuda"), "{said}");
    let said = map(&[("CUDA_VISIBLE_DEVICES", "0,1,2"), ("SLURM_NTASKS_PER_NODE", "6")]);
    assert!(said.contains("6 ranks per node share 3 GPU(s)") && said.contains("--ntasks-per-node=3"), "{said}");
    let said = map(&[("SLURM_GPUS_ON_NODE", "4"), ("SLURM_TASKS_PER_NODE", "1,1")]);
    assert!(said.contains("3 of 4 GPUs per node stay idle"), "{said}");
    // No GPU visible: the CPU, unless told otherwise.
    let said = map(&[("CUDA_VISIBLE_DEVICES", ""), ("SLURM_TASKS_PER_NODE", "2")]);
    assert!(said.contains("no GPU visible") && said.contains("device=cpu"), "{said}");
    let said = map(&[("SLURM_GPUS_ON_NODE", "1"), ("SLURM_TASKS_PER_NODE", "1"), ("HPCML_DEVICE", "cuda:0")]);
    assert!(said.contains("device=cuda:0"), "{said}");
}

/// What a trainer template does once its step has ended, for each way it can end.
#[test]
fn trainer_logic_requeues_only_after_usr1_and_a_clean_exit() {
    let decide = |status: &str, signals: &str, env: &[(&str, &str)]| {
        let mut c = Command::new("bash");
        c.arg("-c").arg(format!(". slurm/common.sh && HPCML_OUT=/runs/x && hpcml_after_step {status} '{signals}'"));
        c.current_dir(root());
        for var in ["SLURM_JOB_ID", "SLURM_RESTART_COUNT", "HPCML_MAX_RESTARTS"] {
            c.env_remove(var);
        }
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        (out.status.code(), text(&out))
    };
    // Finished without a signal: the step's own status.
    assert_eq!(decide("0", "", &[]).0, Some(0));
    assert_eq!(decide("3", "", &[]).0, Some(3));
    // Failed after USR1: its status, no requeue.
    let (code, said) = decide("138", "USR1", &[("SLURM_JOB_ID", "7")]);
    assert_eq!(code, Some(138), "{said}");
    assert!(said.contains("the step failed after SIGUSR1: not requeueing"), "{said}");
    // TERM, alone or after USR1: never a requeue.
    for signals in ["TERM", "USR1 TERM"] {
        let (code, said) = decide("0", signals, &[("SLURM_JOB_ID", "7")]);
        assert_eq!(code, Some(0), "{said}");
        assert!(said.contains("not requeueing after SIGTERM"), "{signals}: {said}");
    }
    // A checkpoint outside Slurm: how to resume.
    let (code, said) = decide("0", "USR1", &[]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("run again with HPCML_OUT=/runs/x to resume"), "{said}");
    // The restart limit.
    let (code, said) =
        decide("0", "USR1", &[("SLURM_JOB_ID", "7"), ("SLURM_RESTART_COUNT", "3"), ("HPCML_MAX_RESTARTS", "3")]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("not requeueing: 3 restarts reached HPCML_MAX_RESTARTS=3"), "{said}");
}
