"""Lockdown rules: pure Python (no Django), strictly typed.

The types every part of the product shares (facts, rules, profiles, plans, observations,
outcomes, the agent contract) and the functions over them:
`load_builtin_profile()`, `compile_plan(profile, facts)`, `evaluate(plan, observed, waivers, now)`,
`summarize(outcomes)`, `generate_schemas()`.
"""

from lockdown.rules.builtin import load_builtin_profile
from lockdown.rules.compile import compile_plan
from lockdown.rules.contract import AgentRequest, AgentResult, ChangeRecord, generate_schemas
from lockdown.rules.evaluate import evaluate, summarize
from lockdown.rules.facts import Facts
from lockdown.rules.observed import Ace, ObservedItem
from lockdown.rules.outcome import RuleOutcome, Summary, Waiver
from lockdown.rules.plan import Plan, PlanItem
from lockdown.rules.profile import Profile, ProfileError, load_profile_text
from lockdown.rules.rule import Rule
from lockdown.rules.vocabulary import RuleAction, RuleStatus

__all__ = [
    "Ace",
    "AgentRequest",
    "AgentResult",
    "ChangeRecord",
    "Facts",
    "ObservedItem",
    "Plan",
    "PlanItem",
    "Profile",
    "ProfileError",
    "Rule",
    "RuleAction",
    "RuleOutcome",
    "RuleStatus",
    "Summary",
    "Waiver",
    "compile_plan",
    "evaluate",
    "generate_schemas",
    "load_builtin_profile",
    "load_profile_text",
    "summarize",
]
