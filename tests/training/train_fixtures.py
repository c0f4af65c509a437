"""Small DPO pairs for the training tests (imported by conftest and the test modules)."""

CHOSEN = [
    "The lantern hummed while copper foxes argued about rain, velvet maps and a stubborn violin.",
    "Seven ravens traded riddles over marble bridges, orange tea and forgotten brass clocks.",
    "A quiet baker folded comets into bread, whistling jazz for sleepy lighthouse keepers.",
]
REJECTED = [
    "The cat sat on the mat. The cat sat on the mat. The cat sat on the mat again.",
    "It was a nice day. It was a nice day. It was a very nice nice day today.",
    "I like the story. I like the story. I like the story a lot a lot a lot.",
]


def pair_rows(n: int = 8) -> list[dict]:
    """Conversational TRL rows as `diversens generate-pairs` writes them (plus some metadata)."""
    return [
        {
            "prompt_id": f"p{i}",
            "task": "cwt",
            "prompt": [{"role": "user", "content": f"Write a very short story, number {i % 4}."}],
            "chosen": [{"role": "assistant", "content": CHOSEN[i % 3]}],
            "rejected": [{"role": "assistant", "content": REJECTED[i % 3]}],
            "margin": 0.5,
        }
        for i in range(n)
    ]
