"""Every path the workbook reads or writes, spelled once.

Artifacts live under a home folder (the repository by default; `WORKBOOK_HOME` moves it,
which the tests use): `data/<profile>/...` for stage outputs and `reports/<profile>/...` for
rendered notebooks. Embedded inputs and notebooks always come from the repository.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
EMBEDDED = REPO / "data" / "embedded"
NODE_ENV = "WORKBOOK_NODE"  # set in a placed run's process: the Ray node it runs on, for its records
# A placed run's output and the outcomes it reports to the grid, beside its reports
RUNNER_LOG, RUNNER_OUTCOMES = "runner.log", "runner.outcomes.json"


def params_dir() -> Path:
    # Tests point this at a modified copy to exercise failures with the real runner.
    return Path(os.environ.get("WORKBOOK_PARAMS", REPO / "params"))


def repo_path(path: str) -> Path:
    """A path named in params: absolute, or relative to the repository (never to the cwd)."""
    return Path(path) if Path(path).is_absolute() else REPO / path


def repo_first(pythonpath: str) -> str:
    """A PYTHONPATH with this checkout first, so that a process imports its `lib`, not whichever
    one an editable install points at."""
    rest = [p for p in pythonpath.split(os.pathsep) if p and p != str(REPO)]
    return os.pathsep.join([str(REPO)] + rest)


def home() -> Path:
    # absolute: a relative WORKBOOK_HOME would mean another folder in a kernel (its cwd is notebooks/)
    return Path(os.environ.get("WORKBOOK_HOME", REPO)).absolute()


def data_root(profile: str) -> Path:
    return home() / "data" / profile


def hub_revisions(profile: str) -> Path:
    """The Hub commits stage 00 resolved the profile's Hub models to (lib/hub.py): every later stage loads those."""
    return data_root(profile) / "models" / "hub_revisions.json"


def reports_root(profile: str) -> Path:
    return home() / "reports" / profile


def run_name(style: str, scenario: str, replicate: int = 0) -> str:
    """`cot_easy`; replicate r > 0 of it (another training, `grid.replicates`) `cot_easy_r<r>`, so
    that replicate 0 is the run as it always was."""
    return f"{style}_{scenario}" + (f"_r{replicate}" if replicate else "")


@dataclass(frozen=True)
class RunPaths:
    """The files of one run (profile, style, scenario, replicate); stages pass only these names
    around. The teacher's solutions belong to the (style, scenario), shared by its replicates."""

    profile: str
    style: str
    scenario: str
    replicate: int = 0

    @property
    def name(self) -> str:
        return run_name(self.style, self.scenario, self.replicate)

    @property
    def family(self) -> str:
        """The (style, scenario) every replicate of this run belongs to."""
        return run_name(self.style, self.scenario)

    @property
    def first(self) -> "RunPaths":
        """Replicate 0 of this run, whose data stage (01) every replicate reads."""
        return RunPaths(self.profile, self.style, self.scenario)

    @property
    def root(self) -> Path:
        return data_root(self.profile)

    # --- profile-wide, shared by every run --------------------------------------------
    @property
    def base_models(self) -> Path:
        return self.root / "models" / "base"

    def base_model(self, role: str) -> Path:
        return self.base_models / role

    @property
    def tokenizer(self) -> Path:
        return self.base_models / "tokenizer"

    # --- per scenario ---------------------------------------------------------------
    @property
    def problems_dir(self) -> Path:
        return self.root / "problems" / self.scenario

    @property
    def train_problems(self) -> Path:
        return self.problems_dir / "train.jsonl"

    @property
    def test_problems(self) -> Path:
        return self.problems_dir / "test.jsonl"

    @property
    def shared_questions(self) -> Path:
        """Training rows dropped because their question is also in an explicit test split."""
        return self.problems_dir / "shared_with_test.jsonl"

    @property
    def duplicate_questions(self) -> Path:
        """Rows dropped because an earlier row of their source asks the same (normalized) question."""
        return self.problems_dir / "duplicates.jsonl"

    # --- per (style, scenario) --------------------------------------------------------
    @property
    def teacher_output(self) -> Path:
        return self.root / "teacher" / f"{self.family}.jsonl"

    @property
    def teacher_rejected(self) -> Path:
        return self.root / "teacher" / f"{self.family}.rejected.jsonl"

    @property
    def teacher_state(self) -> Path:
        """The Gemini batch job of this run (name, submitted ids; never the key), so a re-run
        picks the job up instead of paying for a new one."""
        return self.root / "teacher" / f"{self.family}.gemini_state.json"

    def teacher_results(self, job_name: str) -> Path:
        """A Gemini batch job's results file as downloaded, kept whatever its rows become."""
        return self.root / "teacher" / f"{self.family}.{job_name.rsplit('/', 1)[-1]}.results.jsonl"

    @property
    def distilled(self) -> Path:
        return self.root / "distilled" / f"{self.name}.jsonl"

    def adapter(self, role: str) -> Path:
        return self.root / "models" / "adapters" / role / self.name

    def train_summary(self, role: str) -> Path:
        return train_summary(self.adapter(role))

    def checkpoints(self, role: str) -> Path:
        return self.root / "models" / "checkpoints" / role / self.name

    def merged(self, role: str) -> Path:
        return self.root / "models" / "merged" / role / self.name

    @property
    def eagle3_head(self) -> Path:
        """The run's EAGLE-3 head (speculators' layout: what vLLM loads as `method: eagle3`)."""
        return self.root / "models" / "eagle3" / self.name

    @property
    def eagle3_summary(self) -> Path:
        return train_summary(self.eagle3_head)

    @property
    def eagle3_work(self) -> Path:
        """speculators' own files on the CUDA path (prepared data, checkpoints)."""
        return self.root / "models" / "checkpoints" / "eagle3" / self.name

    @property
    def run_dir(self) -> Path:
        return self.root / "runs" / self.name

    @property
    def samples_csv(self) -> Path:
        return self.run_dir / "benchmark_samples.csv"

    @property
    def metrics_json(self) -> Path:
        return self.run_dir / "metrics.json"

    def figures(self, stage: str) -> Path:
        """The JSON a notebook's last cell writes: what tests and the analysis read back."""
        return self.run_dir / "figures" / f"{stage}.json"

    @property
    def report_dir(self) -> Path:
        return reports_root(self.profile) / self.name

    @property
    def runner_log(self) -> Path:
        return self.report_dir / RUNNER_LOG

    @property
    def runner_outcomes(self) -> Path:
        return self.report_dir / RUNNER_OUTCOMES

    def log(self, stage: str) -> Path:
        """Engine and library logs of a stage (`lib.logs`), beside its report, which links to it."""
        return self.report_dir / f"{stage}.log"

    @property
    def resolved_params(self) -> Path:
        return self.run_dir / "params.yaml"


def train_summary(adapter_dir: Path) -> Path:
    """Where a training run's summary (loss history, tokens/s, memory) sits: beside its adapter."""
    adapter_dir = Path(adapter_dir)
    return adapter_dir.with_name(adapter_dir.name + ".train.json")


def analysis_dir(profile: str) -> Path:
    return data_root(profile) / "analysis"


PROFILE_RUN = "_profile"  # where profile-wide notebooks (base models, analysis) are recorded


def profile_figures(profile: str, stage: str) -> Path:
    return data_root(profile) / "runs" / PROFILE_RUN / "figures" / f"{stage}.json"


def profile_log(profile: str, stage: str) -> Path:
    """A profile-wide notebook's engine and library logs, beside its report."""
    return reports_root(profile) / PROFILE_RUN / f"{stage}.log"
