# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The AWX job templates (awx/job_templates/*.yml, in the format of ``awx export``/``awx import``)
against the playbooks they run: the playbook exists (or is listed as planned), every survey
variable is documented - in the playbooks' run arguments, an argument spec of a role the playbook
uses, or the cluster settings - with the same type and choices, and nothing prompts."""

from __future__ import annotations

import glob
import os

import pytest
import yaml

from .conftest import ROOT

from ansible_collections.kubeforge.cluster.plugins.module_utils import inventory_check

TEMPLATES = sorted(glob.glob(os.path.join(ROOT, "awx", "job_templates", "*.yml")))
# Playbooks another change is building. A template for one of them is checked except for the
# playbook file; the test fails as soon as the file exists, so that this list is kept current.
PLANNED: set[str] = set()
# Every playbook the collection's users run from automation has a template.
EXPECTED = {"install", "scale", "upgrade", "remove_node", "reset", "certs", "etcd_backup", "etcd_restore"}
# What a template may ask for at launch besides its survey: the limit (AWX's field for --limit;
# a launch through the API or a workflow that does not give one uses the template's, and never waits).
ALLOWED_ASK = {"ask_limit_on_launch"}
# AWX's survey types and the argument spec types they carry
TEXT_SPEC_TYPES = {"str", "path", "raw"}
TEXT_SETTING_KINDS = {"name", "version", "cidr", "domain", "endpoint", "mirror", "path"}
BOOL_CHOICES = {"false", "true"}


def load(path):
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def template_of(path):
    data = load(path)
    assert list(data) == ["job_templates"] and len(data["job_templates"]) == 1, path
    return data["job_templates"][0]


def ids(paths):
    return [os.path.splitext(os.path.basename(p))[0] for p in paths]


SETUP = load(os.path.join(ROOT, "awx", "setup.yml"))
RUN_ARGUMENTS = load(os.path.join(ROOT, "playbooks", "meta", "argument_specs.yml"))["argument_specs"]


def role_entry_points(playbook_path):
    """(role, entry point) of every role a playbook runs: ``roles:`` and include/import_role."""
    found = []
    for play in load(playbook_path) or []:
        for role in play.get("roles") or []:
            found.append(((role.get("role") if isinstance(role, dict) else role), "main"))
        tasks = [t for key in ("pre_tasks", "tasks", "post_tasks") for t in play.get(key) or []]
        while tasks:
            task = tasks.pop()
            for block_key in ("block", "rescue", "always"):
                tasks.extend(task.get(block_key) or [])
            for action in ("ansible.builtin.include_role", "ansible.builtin.import_role", "include_role", "import_role"):
                if action in task:
                    found.append((task[action]["name"], task[action].get("tasks_from", "main")))
    return [(name.rsplit(".", 1)[-1], entry) for name, entry in found]


def documented(variable, playbook):
    """Every definition of ``variable`` that applies to ``playbook`` (relative path), as
    (where, kind, definition): kind 'spec' (an argument spec option) or 'setting'."""
    found = []
    stem = os.path.splitext(os.path.basename(playbook))[0]
    options = (RUN_ARGUMENTS.get(stem) or {}).get("options") or {}
    if variable in options:
        found.append((f"playbooks/meta/argument_specs.yml {stem}", "spec", options[variable]))
    path = os.path.join(ROOT, playbook)
    if os.path.exists(path):
        for role, entry in role_entry_points(path):
            specs = load(os.path.join(ROOT, "roles", role, "meta", "argument_specs.yml"))["argument_specs"]
            role_options = specs[entry].get("options") or {}
            if variable in role_options:
                found.append((f"roles/{role} {entry}", "spec", role_options[variable]))
    if variable in inventory_check.SETTINGS:
        found.append(("cluster settings", "setting", inventory_check.SETTINGS[variable]))
    return found


def mismatch(question, kind, definition):
    """Why a survey question does not carry what its definition accepts; None when it does."""
    qtype = question["type"]
    choices = {str(c) for c in question.get("choices") or []}
    if kind == "setting":
        _default, setting_kind, _text = definition
        name = question["variable"]
        if setting_kind == "choice":
            want = {str(c) for c in inventory_check.CHOICES[name]}
            return None if qtype == "multiplechoice" and choices == want else f"needs multiplechoice {sorted(want)}"
        if setting_kind == "bool":
            return None if qtype == "multiplechoice" and choices == BOOL_CHOICES else "needs multiplechoice false/true"
        if setting_kind in ("int", "port"):
            return None if qtype == "integer" else "needs integer"
        if setting_kind in TEXT_SETTING_KINDS:
            return None if qtype in ("text", "textarea") else "needs text"
        return f"a setting of kind {setting_kind} cannot be a survey question"
    spec_type = definition.get("type", "str")
    if definition.get("choices"):
        want = {str(c) for c in definition["choices"]}
        # an optional question that is left unanswered gives the empty default: AWX has no empty choice
        if not question.get("required") and definition.get("default") == "":
            want.discard("")
        return None if qtype == "multiplechoice" and choices == want else f"needs multiplechoice {sorted(want)}"
    if spec_type == "bool":
        return None if qtype == "multiplechoice" and choices == BOOL_CHOICES else "needs multiplechoice false/true"
    if spec_type == "int":
        return None if qtype == "integer" else "needs integer"
    if spec_type == "float":
        return None if qtype == "float" else "needs float"
    if spec_type in TEXT_SPEC_TYPES:
        return None if qtype in ("text", "textarea") else "needs text"
    return f"an option of type {spec_type} cannot be a survey question"


def test_every_playbook_has_a_template():
    assert set(ids(TEMPLATES)) >= EXPECTED
    playbooks = {template_of(p)["playbook"] for p in TEMPLATES}
    assert {f"playbooks/{name}.yml" for name in EXPECTED} <= playbooks


@pytest.mark.parametrize("path", TEMPLATES, ids=ids(TEMPLATES))
def test_playbook_exists(path):
    playbook = template_of(path)["playbook"]
    exists = os.path.exists(os.path.join(ROOT, playbook))
    if playbook in PLANNED:
        assert not exists, f"{playbook} exists now: take it out of PLANNED in {__file__}"
        pytest.skip(f"{playbook} is planned")
    assert exists, f"{path}: {playbook} does not exist"


@pytest.mark.parametrize("path", TEMPLATES, ids=ids(TEMPLATES))
def test_survey_variables_are_documented_with_the_same_type(path):
    template = template_of(path)
    survey = (template.get("related") or {}).get("survey_spec")
    assert template["survey_enabled"] == bool(survey and survey["spec"]), "survey_enabled must say whether there is a survey"
    if not survey:
        return
    problems = []
    for question in survey["spec"]:
        variable = question["variable"]
        definitions = documented(variable, template["playbook"])
        if not definitions:
            problems.append(f"{variable}: not in the playbook's run arguments, an argument spec of its roles, or the cluster settings")
            continue
        for where, kind, definition in definitions:
            why = mismatch(question, kind, definition)
            if why:
                problems.append(f"{variable} ({where}): {why}, the survey has {question['type']} {question.get('choices', '')}")
            if kind == "spec" and definition.get("required") and not question.get("required"):
                problems.append(f"{variable} ({where}): required there, optional in the survey")
        if "default" in question and question.get("choices"):
            if str(question["default"]) not in {str(c) for c in question["choices"]}:
                problems.append(f"{variable}: default {question['default']!r} is not one of its choices")
        if question["type"] == "text" and not question.get("required") and question.get("default", "") == "":
            # AWX passes an unanswered text question as an empty string, which overrides the inventory
            problems.append(f"{variable}: an optional text question without a default sets the variable to ''")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", TEMPLATES, ids=ids(TEMPLATES))
def test_nothing_prompts(path):
    template = template_of(path)
    asked = {key for key, value in template.items() if key.startswith("ask_") and value}
    assert asked <= ALLOWED_ASK, f"asks at launch for {sorted(asked - ALLOWED_ASK)}"
    for question in ((template.get("related") or {}).get("survey_spec") or {}).get("spec") or []:
        assert question["type"] != "password", f"{question['variable']}: a password question; use a credential"
    kinds = [c["credential_type"]["kind"] for c in template["related"]["credentials"]]
    assert sorted(kinds) == ["ssh", "vault"], kinds
    assert template["become_enabled"] is False  # the hosts are reached as root or with ansible_become in the inventory
    playbook = os.path.join(ROOT, template["playbook"])
    if os.path.exists(playbook):
        for play in load(playbook):
            assert "vars_prompt" not in play, f"{template['playbook']}: play {play.get('name')!r} prompts"


def test_no_playbook_or_role_pauses_for_input():
    for path in glob.glob(os.path.join(ROOT, "playbooks", "**", "*.yml"), recursive=True) + \
            glob.glob(os.path.join(ROOT, "roles", "**", "*.yml"), recursive=True):
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        assert "vars_prompt" not in text, path
        for document in [load(path)]:
            stack = [document]
            while stack:
                item = stack.pop()
                if isinstance(item, list):
                    stack.extend(item)
                elif isinstance(item, dict):
                    for action in ("ansible.builtin.pause", "pause"):
                        if action in item:
                            args = item[action] or {}
                            assert isinstance(args, dict) and ("seconds" in args or "minutes" in args), \
                                f"{path}: {item.get('name')!r} pauses without a time limit"
                    stack.extend(item.values())


@pytest.mark.parametrize("path", TEMPLATES, ids=ids(TEMPLATES))
def test_import_format_and_references(path):
    template = template_of(path)
    assert template["natural_key"] == {"organization": {"name": "Default", "type": "organization"},
                                       "name": template["name"], "type": "job_template"}
    assert template["job_type"] in ("run", "check")
    assert template["project"] == SETUP["projects"][0]["natural_key"]
    assert template["inventory"] == SETUP["inventory"][0]["natural_key"]
    assert template["execution_environment"] == SETUP["execution_environments"][0]["natural_key"]
    # no template may be sliced (docs/automation.md, "Past one controller", says why per playbook)
    assert template["job_slice_count"] == 1 and template["ask_job_slice_count_on_launch"] is False
    assert template["allow_simultaneous"] is False


def test_run_arguments_are_read_by_their_playbooks():
    for stem, entry in RUN_ARGUMENTS.items():
        playbook = os.path.join(ROOT, "playbooks", f"{stem}.yml")
        if f"playbooks/{stem}.yml" in PLANNED:
            assert not os.path.exists(playbook), f"{playbook} exists now: take it out of PLANNED"
            continue
        with open(playbook, encoding="utf-8") as handle:
            text = handle.read()
        for variable in entry["options"]:
            assert variable in text, f"{variable} is documented for {stem}.yml, which does not read it"


def test_the_check_catches_drift():
    """The checks above fail on the mistakes they are there for."""
    bool_question = {"variable": "etcd_restore_force", "type": "text"}
    [(_where, kind, definition)] = documented("etcd_restore_force", "playbooks/etcd_restore.yml")
    assert mismatch(bool_question, kind, definition) == "needs multiplechoice false/true"
    choice = {"variable": "kubeforge_network_plugin", "type": "multiplechoice", "choices": ["calico", "weave"]}
    [(_where, kind, definition)] = documented("kubeforge_network_plugin", "playbooks/install.yml")
    assert mismatch(choice, kind, definition).startswith("needs multiplechoice")
    assert documented("etcd_restore_snapshot", "playbooks/etcd_backup.yml")  # the etcd options are shared by its entry points
    assert not documented("no_such_variable", "playbooks/install.yml")
