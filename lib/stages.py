"""The stages: their names, which of them a run has, and the parameter sections each reads.

A small module at the bottom of the import graph, so the runner, the records and the reports
agree on the stages without importing each other.
"""

RUN_STAGES = ("01_generate_data", "02_train_target", "03_distill", "04_train_draft", "05_merge", "06_benchmark")
BASE_STAGES = ("01_generate_data", "06_benchmark")  # the untrained pair: nothing to train
PRE_STAGES = ("00_base_models",)  # once per profile, before the runs
POST_STAGES = ("07_analysis",)  # once per profile, after the runs
PROFILE_STAGES = PRE_STAGES + POST_STAGES
# A trained run's EAGLE-3 head, only where `eagle3.enabled`: between the merge and the benchmark
# (its name sorts there, as `STAGE_SECTIONS` reads it), so that runs without it keep their stages.
EAGLE3_STAGE = "05b_eagle3"
ALL_STAGES = PRE_STAGES + RUN_STAGES[:5] + (EAGLE3_STAGE,) + RUN_STAGES[5:] + POST_STAGES

# The parameter sections each stage reads. A stage's fingerprint covers its own sections and
# those of every stage numbered before it (a changed `data.n_train` re-runs training too). The
# base models read the problems, whose content their record holds (`record.input_files`), not
# the data params: a teacher setting does not rebuild them.
STAGE_SECTIONS = {
    "00_base_models": ("seed", "device", "models"),
    "01_generate_data": ("data", "prompt"),
    "02_train_target": ("train", "replicate"),  # each replicate trains with its own seed
    "03_distill": ("distill", "engine"),
    "04_train_draft": ("train",),
    "05_merge": ("merge",),
    EAGLE3_STAGE: ("eagle3",),  # read only where eagle3.enabled (params.read_keys): off, no record holds it
    "06_benchmark": ("benchmark", "engine"),
    "07_analysis": (),
}
# Sections no stage's result depends on: how many replicates a grid has (each is its own run),
# the report's time budget.
NOT_RESULTS = ("grid", "report")


# Raised when lib changes what a stage computes from the same parameters and notebook: a record
# made before is then run again, not read as current (the runner prints why).
FIRST_REVISION = (1, "the stage as first written")  # a stage absent below, and a record made before revisions
STAGE_REVISIONS = {
    "06_benchmark": (
        5,
        "each engine answers a batch of its pass's prompts in full, untimed, before its calibration and timed "
        "calls (revision 4: the forecast prices a step by the requests decoding in it where its calibration "
        "measured that, and with k auto the pick joins a K sweep that lacks it; 3: the first repetition's engines "
        "answer calibration prompts before their timed passes; 2: engine.async_scheduling auto left each "
        "engine vLLM's default)",
    ),
}


# Keys added after records were made, each with the value that computes what those records did:
# a record made before the key existed stays current while the key keeps that value (a new
# option at its neutral default re-runs no benchmark).
ADDED_KEYS = {"benchmark.warmup_repetitions": 0, "benchmark.warmup_answers": False, "replicate": 0}


def revision(stage: str) -> tuple[int, str]:
    """The stage's revision and what it changed."""
    return STAGE_REVISIONS.get(stage, FIRST_REVISION)


def stages_of(style: str, replicate: int = 0, eagle3: bool = False) -> tuple[str, ...]:
    """The stages of one run of `style` (the untrained base pair has nothing to train); a
    replicate after the first trains on the first one's data (its 01), shared, not made again.
    `eagle3` (params' `eagle3.enabled`): a trained run also trains an EAGLE-3 head before 06."""
    if style == "base":
        return BASE_STAGES
    run = RUN_STAGES[:5] + (EAGLE3_STAGE,) + RUN_STAGES[5:] if eagle3 else RUN_STAGES
    return run if not replicate else run[1:]


def eagle3_on(cfg) -> bool:
    """Whether a run's params give it the EAGLE-3 head's stage (`stages_of`'s `eagle3`)."""
    return bool(cfg and (cfg.get("eagle3") or {}).get("enabled"))
