"""The `custom` task: user prompts of no registered family, and any unknown task name.

No built-in prompts and no format rule; its answers are split by the generic rule (list items
or sentences) and its second turn asks plainly for a different answer.
"""

from diversens.prompts.spec import TaskSpec

CUSTOM = TaskSpec(
    name="custom",
    followup="Please give a different answer from your previous one.",
)
