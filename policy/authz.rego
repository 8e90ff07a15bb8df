# Portcullis authorization policy: one entrypoint, `data.portcullis.authz.decision`, always an
# object. Default deny; the checks run from the most restrictive and the first failing one decides:
# input shape -> module digest trust -> ACL -> scopes -> budget -> sinks -> allowlist (skips only
# the approval hold) -> approval (risk, unresolved domains/paths, sensitive paths) -> allow.
package portcullis.authz

# ---------------------------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------------------------

risk_levels := {"low", "medium", "high", "critical"}

approval_risk_levels := {"high", "critical"}

# Rank of the enforcement modes: the stricter (higher) of the principal's and the action's wins.
mode_rank := {"monitor": 0, "warn": 1, "enforce": 2}

mode_by_rank := {0: "monitor", 1: "warn", 2: "enforce"}

# Every lease must carry this scope before any action-specific scope is considered.
base_scope := "tools:call"

# ---------------------------------------------------------------------------------------------
# Input shape. A malformed input is denied first (the gate validates it too; this is the backstop).
# ---------------------------------------------------------------------------------------------

is_string_array(xs) if {
	is_array(xs)
	every x in xs {
		is_string(x)
	}
}

default input_valid := false

input_valid if {
	is_object(input)
	valid_principal
	is_string(input.session_id)
	valid_action
	is_string_array(input.scopes)
	valid_budget
	is_string_array(input.requested_sinks)
	is_string_array(input.egress.unresolved_domains)
	is_string_array(input.egress.unresolved_paths)
	is_string_array(input.egress.sensitive_paths)
}

valid_principal if {
	is_string(input.principal)
	input.principal != ""

	# `*` names the ACL defaults entry, never a caller.
	input.principal != "*"
}

valid_action if {
	is_string(input.action.id)
	input.action.id != ""
	is_string(input.action.version)
	input.action.risk_level in risk_levels
	is_string_array(input.action.required_scopes)
	is_string_array(input.action.declared_side_effects)
	is_boolean(input.action.digest_trusted)
}

valid_budget if {
	is_boolean(input.budget.exhausted)
	valid_remaining(input.budget.remaining_calls)
	is_number(input.budget.cost)
	input.budget.cost >= 0
}

valid_remaining(r) if is_null(r)

valid_remaining(r) if {
	is_number(r)
	r >= 0
}

# ---------------------------------------------------------------------------------------------
# Checks, each `true` when it passes (undefined inputs make them false: fail closed).
# ---------------------------------------------------------------------------------------------

default digest_trusted := false

# Strict equality with `true`: a string "true" or any other truthy value does not pass.
digest_trusted if input.action.digest_trusted == true

# ACL: the principal's own entry united with the `*` defaults entry.
acl_entries contains entry if {
	some key in [input.principal, "*"]
	entry := data.acl[key]
	is_object(entry)
}

acl_actions contains a if {
	some entry in acl_entries
	some a in entry.actions
	is_string(a)
}

acl_sinks contains s if {
	some entry in acl_entries
	some s in entry.sinks
	is_string(s)
}

default acl_granted := false

acl_granted if input.action.id in acl_actions

required_scopes contains base_scope

required_scopes contains s if some s in input.action.required_scopes

lease_scopes := {s | some s in input.scopes}

missing_scopes := required_scopes - lease_scopes

default scopes_satisfied := false

scopes_satisfied if count(missing_scopes) == 0

default budget_available := false

budget_available if {
	input.budget.exhausted == false
	is_null(input.budget.remaining_calls)
}

budget_available if {
	input.budget.exhausted == false
	is_number(input.budget.remaining_calls)
	input.budget.remaining_calls >= input.budget.cost
}

# The sinks a call touches: what the caller names plus everything the action declares, so an
# empty `requested_sinks` cannot skip the check.
effective_sinks := {s | some s in input.requested_sinks} | {s | some s in input.action.declared_side_effects}

denied_sinks := effective_sinks - acl_sinks

default sinks_allowed := false

sinks_allowed if count(denied_sinks) == 0

# ---------------------------------------------------------------------------------------------
# Approval hold
# ---------------------------------------------------------------------------------------------

default allowlisted := false

# Only the literal `true` for this exact (action, principal) pair; no wildcard.
allowlisted if data.allowlist[input.action.id][input.principal] == true

# An operator override replaces the manifest's level; an invalid override is ignored.
effective_risk := data.risk_overrides[input.action.id] if {
	data.risk_overrides[input.action.id] in risk_levels
} else := input.action.risk_level

# Learned domains: exact `host` or `*.suffix` (strict subdomains only), for this action only.
learned_domain_covers(pattern, domain) if pattern == domain

learned_domain_covers(pattern, domain) if {
	startswith(pattern, "*.")
	suffix := substring(pattern, 1, -1)
	endswith(domain, suffix)
	count(domain) > count(suffix)
}

domain_learned(domain) if {
	some entry in data.learned_domains
	entry.action_id == input.action.id
	learned_domain_covers(entry.domain, domain)
}

# Learned paths cover themselves and everything below them (on a `/` boundary).
learned_path_covers(learned, path) if learned == path

learned_path_covers(learned, path) if startswith(path, concat("", [learned, "/"]))

path_learned(path) if {
	some entry in data.learned_paths
	entry.action_id == input.action.id
	learned_path_covers(entry.path, path)
}

unresolved_domains := {d | some d in input.egress.unresolved_domains; not domain_learned(d)}

unresolved_paths := {p | some p in input.egress.unresolved_paths; not path_learned(p)}

# Sensitive paths always need a human: learning does not resolve them.
sensitive_paths := {p | some p in input.egress.sensitive_paths}

# The reasons in a fixed order, each present at most once.
approval_reasons := [r |
	some r in ["risk_high", "risk_critical", "unresolved_domains", "unresolved_paths", "sensitive_paths"]
	approval_reason[r]
]

approval_reason contains "risk_high" if effective_risk == "high"

approval_reason contains "risk_critical" if effective_risk == "critical"

approval_reason contains "unresolved_domains" if count(unresolved_domains) > 0

approval_reason contains "unresolved_paths" if count(unresolved_paths) > 0

approval_reason contains "sensitive_paths" if count(sensitive_paths) > 0

# ---------------------------------------------------------------------------------------------
# Ordered evaluation and enforcement modes
# ---------------------------------------------------------------------------------------------

checks := [
	{"rule": "input.valid", "ok": input_valid, "code": "invalid_input"},
	{"rule": "trust.digest_trusted", "ok": digest_trusted, "code": "untrusted_digest"},
	{"rule": "acl.granted", "ok": acl_granted, "code": "not_in_acl"},
	{"rule": "scopes.satisfied", "ok": scopes_satisfied, "code": "missing_scope"},
	{"rule": "budget.available", "ok": budget_available, "code": "budget_exhausted"},
	{"rule": "sinks.allowed", "ok": sinks_allowed, "code": "sink_not_allowed"},
]

# Hard denies hold in every mode: a malformed input, an untrusted module and an exhausted budget
# are never downgraded by monitor/warn.
hard_codes := {"invalid_input", "untrusted_digest", "budget_exhausted"}

configured_modes contains m if {
	m := data.modes.principals[input.principal]
}

configured_modes contains m if {
	m := data.modes.actions[input.action.id]
}

# The stricter of the principal's and the action's mode; an unknown value counts as `enforce`
# (fail closed); nothing configured means `enforce`.
mode_ranks := {object.get(mode_rank, m, 2) | some m in configured_modes}

enforcement_mode := mode_by_rank[max(mode_ranks)] if {
	count(mode_ranks) > 0
} else := "enforce"

failed_indexes := {i | some i; checks[i].ok == false}

blocks(i) if checks[i].code in hard_codes

blocks(_) if enforcement_mode == "enforce"

blocking_indexes := {i | some i in failed_indexes; blocks(i)}

denied if count(blocking_indexes) > 0

deny_reason_code := checks[min(blocking_indexes)].code

# In monitor/warn, the first failing soft check is recorded instead of denying.
would_deny_reason_code := checks[min(failed_indexes)].code if {
	not denied
	count(failed_indexes) > 0
}

blocked_at_or_before(i) if {
	some j in blocking_indexes
	j <= i
}

trail_label(i) := checks[i].rule if checks[i].ok == true

trail_label(i) := concat(".", ["would_deny", checks[i].code]) if checks[i].ok == false

rule_trail := [trail_label(i) | some i; checks[i]; not blocked_at_or_before(i)]

principal_text := input.principal if {
	is_string(input.principal)
} else := "?"

action_text := input.action.id if {
	is_string(input.action.id)
} else := "?"

# Human text for a check's code (the codes are exclusive, so one definition applies).
reason_for(code) := "policy input is malformed" if code == "invalid_input"

reason_for(code) := concat("", ["module digest of action '", action_text, "' is not trusted"]) if {
	code == "untrusted_digest"
}

reason_for(code) := concat("", ["action '", action_text, "' not in ACL for principal '", principal_text, "'"]) if {
	code == "not_in_acl"
}

reason_for(code) := concat("", ["lease is missing scopes: ", concat(", ", sort(missing_scopes))]) if {
	code == "missing_scope"
}

reason_for(code) := "call budget exhausted" if code == "budget_exhausted"

reason_for(code) := concat("", ["sinks not allowed for principal '", principal_text, "': ", concat(", ", sort(denied_sinks))]) if {
	code == "sink_not_allowed"
}

default requires_approval := false

requires_approval if {
	not denied
	not allowlisted
	count(approval_reasons) > 0
}

default allow := false

allow if {
	not denied
	not requires_approval
}

approval_rules := ["allowlist.skip_approval"] if {
	not denied
	allowlisted
} else := [concat(".", ["approval", r]) | some r in approval_reasons] if {
	not denied
	count(approval_reasons) > 0
} else := ["approval.not_required"] if {
	not denied
} else := []

terminal_rule := concat(".", ["deny", deny_reason_code]) if {
	denied
} else := "approval.required" if {
	requires_approval
} else := "allow"

matched_rules := array.concat(array.concat(rule_trail, approval_rules), [terminal_rule])

# ---------------------------------------------------------------------------------------------
# Budgets, sinks, version, risk
# ---------------------------------------------------------------------------------------------

budgets_after := {"remaining_calls": input.budget.remaining_calls - input.budget.cost} if {
	not denied
	is_number(input.budget.remaining_calls)
} else := {"remaining_calls": input.budget.remaining_calls} if {
	valid_budget
} else := {"remaining_calls": null}

approved_sinks := sort(effective_sinks) if {
	not denied
} else := []

policy_version := data.policy_version if {
	is_string(data.policy_version)
	data.policy_version != ""
} else := "unset"

risk_level := effective_risk if {
	effective_risk in risk_levels
} else := "critical"

# ---------------------------------------------------------------------------------------------
# The entrypoint
# ---------------------------------------------------------------------------------------------

# Should any part be undefined (it should not), the whole answer is this deny.
default decision := {
	"allow": false,
	"requires_approval": false,
	"deny_reason_code": "invalid_input",
	"deny_reason": "policy could not evaluate the input",
	"would_deny_reason_code": null,
	"would_deny_reason": null,
	"approval_reasons": [],
	"budgets_after": {"remaining_calls": null},
	"approved_sinks": [],
	"policy_version": "unset",
	"matched_rules": ["deny.invalid_input"],
	"enforcement_mode": "enforce",
	"risk_level": "critical",
}

decision := {
	"allow": allow,
	"requires_approval": requires_approval,
	"deny_reason_code": deny_code_out,
	"deny_reason": deny_reason_out,
	"would_deny_reason_code": would_deny_code_out,
	"would_deny_reason": would_deny_reason_out,
	"approval_reasons": approval_reasons_out,
	"budgets_after": budgets_after,
	"approved_sinks": approved_sinks,
	"policy_version": policy_version,
	"matched_rules": matched_rules,
	"enforcement_mode": enforcement_mode,
	"risk_level": risk_level,
}

approval_reasons_out := approval_reasons if {
	requires_approval
} else := []

deny_code_out := deny_reason_code if {
	denied
} else := null

deny_reason_out := reason_for(deny_reason_code) if {
	denied
} else := null

would_deny_code_out := would_deny_reason_code if {
	not denied
} else := null

would_deny_reason_out := reason_for(would_deny_reason_code) if {
	not denied
} else := null
