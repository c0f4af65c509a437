"""DAT and PGT eval scores on fixed inputs."""

import numpy as np
import pytest

from diversens.evaluation.task_scores import GloVe, dat_score, score_dat, score_pgt
from diversens.prompts.tasks.dat import dat_words


def test_dat_words_takes_first_ten_distinct_single_words():
    text = "Here you go:\n1. Cat\n2. ice cream\n3. dog\n4. cat\n5. 42\n" + "\n".join(
        f"{i}. w{chr(96 + i)}ord" for i in range(6, 20)
    )
    valid, invalid = dat_words(text)
    assert valid[:2] == ["cat", "dog"] and len(valid) == 10
    assert invalid == 3  # "ice cream", repeated "cat", "42"


def test_dat_score_matches_hand_computed_cosines():
    v = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # pairwise cosines: (1,2)=0, (1,3)=(2,3)=1/sqrt(2)
    want = 100 * np.mean([1 - 0, 1 - 1 / np.sqrt(2), 1 - 1 / np.sqrt(2)])
    assert dat_score(v) == pytest.approx(want)
    assert np.isnan(dat_score(v[:1]))


def test_score_dat_with_glove_file(tmp_path):
    glove = tmp_path / "glove.txt"
    glove.write_text("cat 1 0\ndog 0 1\nsun 1 1\n")
    vectors = GloVe(glove)
    out = score_dat(["1. cat\n2. dog\n3. sun\n4. zyx"], vectors, known=vectors.known)
    want = 100 * np.mean([1.0, 1 - 1 / np.sqrt(2), 1 - 1 / np.sqrt(2)])
    assert out["dat_score"][0] == pytest.approx(want)
    assert out["dat_words"][0] == 3 and out["dat_invalid"][0] == 1  # "zyx" has no vector


def test_pgt_counts_unique_values_and_invalid_json():
    texts = [
        '{"first_name": "Ana", "city": "Lima", "occupation": "nurse"}',
        '{"first_name": "ana ", "city": "Oslo", "occupation": "Nurse"}',
        '```json\n{"first_name": "Bo", "city": "Lima", "occupation": "pilot"}\n```',
        '{"first_name": "Cy", "city": ',  # malformed
        '{"first_name": "Di"}',  # missing fields
    ]
    out = score_pgt(texts)
    assert out["pgt_json_valid_rate"] == pytest.approx(3 / 5)
    assert (out["pgt_unique_first_name"], out["pgt_unique_city"], out["pgt_unique_occupation"]) == (
        2,
        2,
        2,
    )


def test_replicate_gives_each_task_its_sample_count_with_one_k():
    from diversens.jobs.evaluate import replicate
    from diversens.prompts import eval_prompts, literature_samples

    prompts = eval_prompts()
    literature = literature_samples()
    rows, k = replicate(prompts, literature)
    assert k == 10
    samples = rows.groupby("source_prompt_id").size() * k
    tasks = prompts.set_index("prompt_id").task
    assert all(samples[p] == literature[tasks[p]] for p in prompts.prompt_id)
    assert rows.prompt_id.is_unique
    rows, k = replicate(prompts, {"dat": 4, "pgt": 6, "aut": 2, "cwt": 2})
    assert k == 2 and (rows.task == "pgt").sum() == 3
