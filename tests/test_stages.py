"""Stage logic without Snakemake: config checks, the scripted teacher, subsets and the RL draw."""

import copy
import random

import pytest
import yaml

from conftest import REPO
from mmfr.demo import synth
from mmfr.config import ConfigError, check_config
from mmfr.demo.teacher import ScriptedBackend, trace
from mmfr.generate import Request
from mmfr.subsets import in_rl
from mmfr.verify import VerifyConfig, verify_response


@pytest.fixture
def config():
    return yaml.safe_load((REPO / "config.yaml").read_text())


@pytest.mark.parametrize("edit, key", [
    (lambda c: c["sources"].append(copy.deepcopy(c["sources"][0])), "sources[22].name"),
    (lambda c: c["subsets"].append({"name": "rl40k"}), "selection.rl.name"),
    (lambda c: c["models"]["proxy"].update(model="models/base/70b"), "models.proxy.model"),
    (lambda c: c["models"]["judge"].update(backend="scripted"), "models.judge.backend"),
    (lambda c: c["subsets"][0].update(where="true; DROP TABLE pool"), "subsets[0].where"),
    (lambda c: c["train"].update(stages=["dpo"]), "train.stages"),
    (lambda c: c["sources"][0].update(adapter="caption_mcq"), "adapter caption_mcq needs models.question_writer"),
    (lambda c: c["sources"][0].update(dense_captions=True), "sources[0].dense_captions"),
])
def test_config_errors_name_the_key(config, edit, key):
    check_config(config)
    edit(config)
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        check_config(config)


@pytest.mark.parametrize("edit, key", [
    (lambda c: c.update(sede=99), "sede: unknown key (did you mean 'seed'?"),
    (lambda c: c["verify"].update(min_cot_wrds=10), "verify.min_cot_wrds: unknown key (did you mean 'min_cot_words'?"),
    (lambda c: c["models"]["trace"].update(temprature=0.6), "models.trace.temprature: unknown key"),
    (lambda c: c["sources"][0].update(shards="four"), "sources[0].shards: 'four' is not of type 'integer'"),
])
def test_schema_errors_name_the_key(config, edit, key):
    from mmfr.config import check_schema

    schema = str(REPO / "schemas/config.schema.yaml")
    check_schema(config, schema)
    edit(config)
    with pytest.raises(ConfigError) as error:
        check_schema(config, schema)
    assert key in str(error.value)


def test_a_filter_is_compiled_before_any_job(config):
    from mmfr.config import check_filters

    check_filters(config)
    config["subsets"][0]["where"] = "pass_rat = 0"
    with pytest.raises(ConfigError, match=r"subsets\[0\]\.where \(mfr1800k\).*pass_rat"):
        check_filters(config)
    config["subsets"][0]["where"] = "pass_rate = = 0"
    with pytest.raises(ConfigError, match=r"subsets\[0\]\.where"):
        check_filters(config)


def test_a_local_dataset_path_that_does_not_exist_is_named(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config["sources"][0]["hf_id"] = "./mirror/mmr1"
    with pytest.raises(ConfigError, match=r"sources\[0\]\.hf_id .*'./mirror/mmr1' does not exist"):
        check_config(config)
    (tmp_path / "mirror/mmr1").mkdir(parents=True)
    check_config(config)
    config["sources"][0]["hf_id"] = "MMR1/MMR1-SFT"  # a hub id is never taken for a path
    check_config(config)


def context(rec):
    return {"metadata": rec["metadata"], "answer": rec["answer"], "answer_type": rec["answer_type"],
            "choices": rec["choices"]}


def test_scripted_traces_verify_when_the_teacher_makes_no_mistake():
    cfg = VerifyConfig(min_cot_words=40)
    for family in synth.FAMILIES:
        for rec in synth.generate(family, "train", 15, seed=3):
            text = trace(context(rec), random.Random(0), {})
            verdict = verify_response(text, rec["answer"], rec["answer_type"], rec["choices"], cfg)
            assert verdict["verdict"] == "correct", (family, verdict, text)


@pytest.mark.parametrize("mistake, verdict, decided_by", [
    ("wrong_answer", "wrong", None), ("no_answer_tag", "rejected", "template"),
    ("unclosed_think", "rejected", "template"), ("repetition", "rejected", "repetition"),
    ("too_short", "rejected", "length"),
])
def test_each_scripted_mistake_is_caught_by_verification(mistake, verdict, decided_by):
    cfg = VerifyConfig(min_cot_words=40)
    for rec in synth.generate("charts", "train", 10, seed=5):
        text = trace(context(rec), random.Random(1), {mistake: 1.0})
        v = verify_response(text, rec["answer"], rec["answer_type"], rec["choices"], cfg)
        assert v["verdict"] == verdict and (decided_by is None or v["decided_by"] == decided_by), (mistake, v)


def test_scripted_backend_reports_records_it_cannot_trace():
    backend = ScriptedBackend({"backend": "scripted", "model": "t"})
    req = Request("x", (), (), 0, 0, {"task": "trace", "metadata": {}, "answer": "1", "answer_type": "number",
                                      "choices": []})
    (resp,) = backend.generate([req], ["k"])
    assert resp.finish_reason == "error" and resp.error


def test_rl_draw_is_per_sample_and_stable():
    ids = [f"{i:016x}" for i in range(20000)]
    drawn = [i for i in ids if in_rl(7, i, 0.1)]
    assert 0.09 < len(drawn) / len(ids) < 0.11
    # adding samples never moves one already there in or out of the draw
    more = ids + [f"new{i}" for i in range(5000)]
    assert [i for i in more if in_rl(7, i, 0.1)][: len(drawn)] == drawn
    assert drawn != [i for i in ids if in_rl(8, i, 0.1)]  # another seed, another draw


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["train"]["sft"].update(learnig_rate=1e-5), "train.sft.learnig_rate: unknown key (did you mean 'learning_rate'"),
    (lambda c: c["train"]["gspo"].update(num_generation=4), "train.gspo.num_generation: unknown key (did you mean 'num_generations'"),
    (lambda c: c["train"]["sft"].update(output_dir="/x"), "train.sft.output_dir: set by mmfr"),
    (lambda c: c["students"][0].update(warmup={"n_per_family": 2, "epochs": 2}), "students[0].warmup.epochs: unknown key"),
    (lambda c: c["train"]["dpo"].update(betta=0.2), "train.dpo.betta: unknown key (did you mean 'beta'"),
    (lambda c: c["train"].update(gpus=0), "train.gspo.use_vllm: vLLM rollouts need GPUs and train.gpus is 0"),
])
def test_training_settings_are_trl_s_own_fields(config, edit, message):
    """train.sft, train.gspo and train.dpo are checked against TRL's SFTConfig, GRPOConfig and
    DPOConfig themselves."""
    from mmfr.config import check_training

    check_training(config)
    edit(config)
    with pytest.raises(ConfigError) as error:
        check_training(config)
    assert message in str(error.value)


def test_a_training_value_trl_refuses_is_named_before_the_model_loads():
    from mmfr.train import check_settings, SettingsError

    check_settings("sft", {"lr_scheduler_type": "cosine", "warmup_steps": 0.03})
    with pytest.raises(SettingsError, match="train.sft: trl.SFTConfig refuses the settings"):
        check_settings("sft", {"lr_scheduler_type": "sideways"})




def test_vllm_rollouts_without_a_gpu_stop_the_job_before_the_model_loads(tmp_path):
    from mmfr.train import SettingsError, gspo

    with pytest.raises(SettingsError, match="train.gspo.use_vllm: vLLM rollouts need a GPU"):
        gspo(str(tmp_path / "no-model"), ["no-shard.parquet"], str(tmp_path / "out"), {"use_vllm": True}, 0)
    assert not (tmp_path / "out").exists()


def test_flash_attention_without_a_gpu_stops_the_job_before_the_model_loads(tmp_path):
    from mmfr.train import SettingsError, sft

    with pytest.raises(SettingsError, match="attn_implementation 'flash_attention_2' needs a GPU"):
        sft(str(tmp_path / "no-model"), ["no-shard.parquet"], str(tmp_path / "out"),
            {"attn_implementation": "flash_attention_2"}, 0)
