import pytest
from omegaconf import OmegaConf

from difflm.config import compose, parse_overrides, upstream_notice
from difflm.errors import UserError


def test_groups_and_overrides_compose(tmp_path):
    cfg = compose([f"run={tmp_path}", "model=tiny", "vae.max_steps=7", "vae.lr=3e-3", "model.lora.r=16"])
    assert cfg.model.llm.source == "tiny" and cfg.vae.max_steps == 7 and cfg.model.lora.r == 16
    assert cfg.vae.lr == pytest.approx(3e-3)
    assert cfg.data.name == "adult" and cfg.defaults.model == "tiny"


def test_unknown_key_names_the_nearest_valid_ones(tmp_path):
    with pytest.raises(UserError, match=r"unknown config key 'vae.max_step'; did you mean vae.max_steps"):
        compose([f"run={tmp_path}", "vae.max_step=3"])


def test_unknown_group_lists_choices(tmp_path):
    with pytest.raises(UserError, match=r"unknown model 'smollm': choose one of smollm2"):
        compose([f"run={tmp_path}", "model=smollm"])
    with pytest.raises(UserError, match=r"unknown data 'adlt'.*adult.*or a path"):
        compose([f"run={tmp_path}", "data=adlt"])


def test_wrong_type_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"config key 'vae.max_steps' expects an integer, got 'many'"):
        compose([f"run={tmp_path}", "vae.max_steps=many"])
    with pytest.raises(UserError, match="not key=value"):
        parse_overrides(["stage"])


def test_column_temperatures_are_entries_of_the_users_choosing(tmp_path):
    entries = ["sample.column_temperature.categorical=1.2", "sample.column_temperature.income=0.8"]
    cfg = compose([f"run={tmp_path}", *entries])
    assert OmegaConf.to_container(cfg.sample.column_temperature) == {"categorical": 1.2, "income": 0.8}
    cfg = compose([f"run={tmp_path}", "sample.column_temperature.age=2", "sample.column_temperature={float: 0.9}"])
    assert OmegaConf.to_container(cfg.sample.column_temperature) == {"float": 0.9}  # the whole section replaced
    with pytest.raises(UserError, match="'sample.column_temperatures.income'; did you mean sample.column_temperature,"):
        compose([f"run={tmp_path}", "sample.column_temperatures.income=0.8"])


def test_values_that_are_not_yaml_stay_strings():
    # the shell removes the quotes of condition.income='>50K'; YAML would read ">" as a block scalar
    assert parse_overrides(["condition.income=>50K", "a=[x,y]", "b=30..40"]) == [
        ("condition.income", ">50K"), ("a", ["x", "y"]), ("b", "30..40")]


def test_data_path_selects_the_user_table_preset(tmp_path):
    cfg = compose([f"run={tmp_path}", "data=some/people.csv"])
    assert cfg.data.source == "some/people.csv" and cfg.data.name == "people" and cfg.data.target is None


def test_a_budget_sets_steps_by_record_type_whatever_the_order_typed(tmp_path):
    table = compose([f"run={tmp_path}", "budget=cpu60"])
    code = compose([f"run={tmp_path}", "budget=cpu60", "data=code"])
    tools = compose([f"run={tmp_path}", "data=tools", "budget=cpu60"])
    assert code.decoder.max_steps < table.decoder.max_steps and tools.decoder.max_steps < table.decoder.max_steps
    assert code.decoder.max_steps == table.by_record_type.code.decoder.max_steps
    assert table.sample.temperature == code.sample.temperature == tools.sample.temperature == 1.0
    assert table.sample.column_temperature == {"categorical": 1.1}  # code and tool records have no columns
    assert (table.model.lora.r, len(table.model.lora.target_modules)) == (16, 7)  # Adult: all seven projections
    assert (table.sample.batch_size, code.sample.batch_size, tools.sample.batch_size) == (256, 64, 64)  # cache memory
    for texts in (code, tools):  # the adapters their results were measured with
        lora = texts.model.lora
        assert (lora.r, list(lora.target_modules)) == (8, ["q_proj", "k_proj", "v_proj", "o_proj"])
    assert tools.data.max_rows is None and compose([f"run={tmp_path}", "budget=cpu60", "data=tools"]) == tools
    assert compose([f"run={tmp_path}", "data=code", "budget=cpu60", "decoder.max_steps=9"]).decoder.max_steps == 9
    assert compose([f"run={tmp_path}", "data=code"]).decoder.max_steps == compose([f"run={tmp_path}"]).decoder.max_steps


def test_saved_run_config_is_the_base(tmp_path):
    first = compose([f"run={tmp_path}", "model=tiny", "vae.max_steps=5"])
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(first))
    later = compose([f"run={tmp_path}", "stage=prior"])
    assert later.model.name == "tiny" and later.vae.max_steps == 5 and later.stage == "prior"


def test_a_new_run_says_what_it_takes_from_its_upstreams_configuration(tmp_path):
    upstream = compose([f"run={tmp_path}/up", "model=tiny", "decoder.loss_on=constrained", "vae.max_steps=5"])
    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "config.yaml").write_text(OmegaConf.to_yaml(upstream))
    argv = [f"run={tmp_path}/new", f"upstream={tmp_path}/up", "stage=decoder", "vae.max_steps=5"]
    assert compose(argv).decoder.loss_on == "constrained"
    assert compose(argv, inherit=False).decoder.loss_on == "all"

    def notice_for(argv):
        return upstream_notice(compose(argv), argv)

    notice = notice_for(argv)
    assert f"upstream={tmp_path}/up: this run starts from that run's configuration" in notice
    assert "sets model=tiny, decoder.loss_on=constrained (else all)" in notice  # a preset named once, not key by key
    assert "model.name" not in notice
    assert "vae.max_steps" not in notice  # typed on this command line too
    assert notice_for([*argv, "decoder.loss_on=all"]).count("loss_on") == 0
    assert notice_for([*argv, "decoder.loss_on=constrained", "model=tiny"]) is None  # nothing it did not name
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "config.yaml").write_text(OmegaConf.to_yaml(compose(argv)))
    assert notice_for(argv) is None  # a resumed run: its own configuration, nothing new to say
    assert notice_for([f"run={tmp_path}/other"]) is None


def test_a_run_saved_before_a_key_existed_gets_its_default(tmp_path):
    first = OmegaConf.to_container(compose([f"run={tmp_path}", "model=tiny", "vae.max_steps=5"]))
    del first["evaluation"]
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(first))
    later = compose([f"run={tmp_path}", "stage=decoder"])
    assert later.evaluation.rows == 8 and later.model.name == "tiny" and later.vae.max_steps == 5


def test_a_stage_may_set_its_own_precision(tmp_path):
    from difflm.run_dir import RunDir
    from difflm.trainer import make_trainer

    cfg = compose([f"run={tmp_path}/run", "model=tiny", "logger=none", "trainer.precision=bf16-mixed"])
    run = RunDir(cfg.run)
    assert make_trainer(cfg, run, "prior", cfg.prior).precision == "32-true"  # configs/stage/prior.yaml
    assert make_trainer(cfg, run, "decoder", cfg.decoder).precision == "bf16-mixed"


def test_precision_auto_is_bf16_only_where_the_device_computes_it_natively(monkeypatch):
    import torch

    from difflm import trainer

    for native, expected in ((torch.bfloat16, "bf16-mixed"), (torch.float32, "32-true")):
        monkeypatch.setattr(trainer, "native_dtype", lambda device, native=native: native)
        assert trainer.resolve_precision("auto", "cpu") == expected
        assert trainer.resolve_precision("16-mixed", "cpu") == "16-mixed"  # anything else is Lightning's
    asked = []
    monkeypatch.setattr(trainer, "native_dtype", lambda device: asked.append(device) or torch.float32)
    trainer.resolve_precision("auto", "cpu")
    assert asked == ["cpu"]  # accelerator=cpu: the CPU's own bfloat16, even where a GPU is present
    assert compose(["budget=cpu60"]).trainer.precision == "auto"
