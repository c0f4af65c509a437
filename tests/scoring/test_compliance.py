"""Compliance rules per task: what each task's format asks for, read from the prompt's meta."""

import pytest
from candidates import CFG, DAT_OK, STORY

from diversens.prompts import compliance_issue


@pytest.mark.parametrize(
    ("text", "task", "meta", "reason"),
    [
        ("", "cwt", {}, "empty"),
        ("   \n", "aut", {}, "empty"),
        (DAT_OK, "dat", {}, None),
        ("1. cat\n2. dog\n3. big red bus", "dat", {}, "dat_too_few_single_words"),
        ("1. a\n2. b\n3. c\n4. d\n5. e", "aut", {}, None),
        ("1. a\n2. b\n3. c", "aut", {}, "aut_too_few_uses"),
        ('{"first_name": "Ana", "city": "Lima", "occupation": "nurse"}', "pgt", {}, None),
        ('Sure! ```json\n{"first_name": "Ana", "city": "Lima", "occupation": "nurse"}\n```', "pgt", {}, None),
        ('{"first_name": "Ana", "city": ""}', "pgt", {}, "pgt_missing_field"),
        ('{"first_name": "Ana", "city": ', "pgt", {}, "pgt_invalid_json"),
        (STORY, "cwt", {"words": ["stamp", "letter", "send"]}, None),
        (STORY, "cwt", {"words": ["stamp", "petrol", "send"]}, "cwt_missing_word"),
        ("A stamp, a letter; send.", "cwt", {"words": ["stamp", "letter", "send"]}, "cwt_sentence_count"),
        ("anything goes", "custom", {}, None),
        (STORY, "cwt", {"item": "stamp/letter/send"}, None),
        (STORY, "cwt", {"item": "stamp/letter/pump"}, "cwt_missing_word"),
        ("1. cat\n2. dog\n3. eel", "dat", {"variant": "n3-w0"}, None),
        ("1. cat\n2. dog\n3. eel", "dat", {"variant": "n4-w0"}, "dat_too_few_single_words"),
        ('{"first_name": "Ana", "age": "30"}', "pgt", {"item": "first_name,age"}, None),
        # Words, not prefixes: "single" does not use "sing", "organization" not "organ"; regular
        # inflections, possessives and hyphenated parts do count.
        ("She sang a single song. It was good. Faith grew. Belief too.", "cwt",
         {"words": ["belief", "faith", "sing"]}, "cwt_missing_word"),
        ("The organization grew. The empire fell. They complied. Done now.", "cwt",
         {"words": ["organ", "empire", "comply"]}, "cwt_missing_word"),
        ("The organ's pipes rang. Empires fell. Nobody complies. She is singing. Fine.", "cwt",
         {"words": ["organ", "empire", "comply"]}, None),
        ("A letter-writing day. She sends stamps. It was fine. The end came.", "cwt",
         {"words": ["stamp", "letter", "send"]}, None),
    ],
)  # fmt: skip
def test_compliance(text, task, meta, reason):
    assert compliance_issue(text, task, meta, CFG) == reason
