# Tests for data.portcullis.authz.decision: one case per rule and per boundary (`opa test policy/`).
package portcullis.authz_test

import data.portcullis.authz

base_action := {
	"id": "http_fetch",
	"version": "1.0.0",
	"risk_level": "low",
	"required_scopes": [],
	"declared_side_effects": ["http_read"],
	"digest_trusted": true,
}

base_input := {
	"principal": "agent-1",
	"session_id": "ses_1",
	"action": base_action,
	"scopes": ["tools:call"],
	"budget": {"exhausted": false, "remaining_calls": 10, "cost": 1},
	"requested_sinks": [],
	"egress": {"unresolved_domains": [], "unresolved_paths": [], "sensitive_paths": []},
}

base_data := {
	"policy_version": "test-1",
	"acl": {
		"agent-1": {"actions": ["http_fetch", "http_post", "deploy"], "sinks": ["http_read", "http_write"]},
		"agent-2": {"actions": ["github_read"], "sinks": ["http_read"]},
	},
	"allowlist": {},
	"risk_overrides": {},
	"learned_domains": [],
	"learned_paths": [],
	"modes": {"principals": {}, "actions": {}},
}

# with_action(patch) / with_input(patch): the base input with some fields replaced.
with_action(patch) := object.union(base_input, {"action": object.union(base_action, patch)})

with_input(patch) := object.union(base_input, patch)

# Top-level data keys are replaced, not merged, so a patch can empty a document.
with_data(patch) := object.union(object.remove(base_data, object.keys(patch)), patch)

decide(inp, d) := r if {
	r := authz.decision with input as inp
		with data.acl as d.acl
		with data.allowlist as d.allowlist
		with data.risk_overrides as d.risk_overrides
		with data.learned_domains as d.learned_domains
		with data.learned_paths as d.learned_paths
		with data.modes as d.modes
		with data.policy_version as d.policy_version
}

denied_with(d, code) if {
	d.would_deny_reason_code == null
	d.would_deny_reason == null
	d.allow == false
	d.requires_approval == false
	d.deny_reason_code == code
	is_string(d.deny_reason)
	d.approval_reasons == []
	d.approved_sinks == []
}

held_for(d, reasons) if {
	d.allow == false
	d.requires_approval == true
	d.deny_reason_code == null
	d.deny_reason == null
	d.approval_reasons == reasons
}

allowed(d) if {
	d.would_deny_reason_code == null
	d.allow == true
	d.requires_approval == false
	d.deny_reason_code == null
	d.deny_reason == null
	d.approval_reasons == []
}

# --- allow -------------------------------------------------------------------------------------

test_allow_baseline if {
	d := decide(base_input, base_data)
	allowed(d)
	d.approved_sinks == ["http_read"]
	d.budgets_after == {"remaining_calls": 9}
	d.policy_version == "test-1"
	d.risk_level == "low"
	d.enforcement_mode == "enforce"
}

test_allow_matched_rules_in_order if {
	d := decide(base_input, base_data)
	d.matched_rules == [
		"input.valid", "trust.digest_trusted", "acl.granted", "scopes.satisfied",
		"budget.available", "sinks.allowed", "approval.not_required", "allow",
	]
}

test_allow_medium_risk_needs_no_approval if {
	allowed(decide(with_action({"risk_level": "medium"}), base_data))
}

# --- input shape (default deny) ----------------------------------------------------------------

test_deny_empty_input if {
	denied_with(decide({}, base_data), "invalid_input")
}

test_deny_non_object_input if {
	denied_with(decide(42, base_data), "invalid_input")
}

test_deny_wildcard_principal_as_caller if {
	denied_with(decide(with_input({"principal": "*"}), with_data({"acl": {"*": {"actions": ["http_fetch"], "sinks": ["http_read"]}}})), "invalid_input")
}

test_deny_empty_principal if {
	denied_with(decide(with_input({"principal": ""}), base_data), "invalid_input")
}

test_deny_unknown_risk_level if {
	denied_with(decide(with_action({"risk_level": "none"}), base_data), "invalid_input")
}

test_deny_digest_trusted_string_is_not_boolean if {
	denied_with(decide(with_action({"digest_trusted": "true"}), base_data), "invalid_input")
}

test_deny_missing_egress if {
	inp := object.remove(base_input, ["egress"])
	denied_with(decide(inp, base_data), "invalid_input")
}

test_deny_negative_cost if {
	denied_with(decide(with_input({"budget": {"exhausted": false, "remaining_calls": 10, "cost": -1}}), base_data), "invalid_input")
}

test_deny_negative_remaining_calls if {
	denied_with(decide(with_input({"budget": {"exhausted": false, "remaining_calls": -1, "cost": 0}}), base_data), "invalid_input")
}

test_deny_scopes_not_strings if {
	denied_with(decide(with_input({"scopes": ["tools:call", 7]}), base_data), "invalid_input")
}

test_invalid_input_matched_rules_only_the_deny if {
	d := decide({}, base_data)
	d.matched_rules == ["deny.invalid_input"]
	d.budgets_after == {"remaining_calls": null}
}

# --- trust -------------------------------------------------------------------------------------

test_deny_untrusted_digest if {
	d := decide(with_action({"digest_trusted": false}), base_data)
	denied_with(d, "untrusted_digest")
	d.matched_rules == ["input.valid", "deny.untrusted_digest"]
}

test_untrusted_digest_beats_acl if {
	denied_with(decide(with_input({"principal": "nobody", "action": object.union(base_action, {"digest_trusted": false})}), base_data), "untrusted_digest")
}

test_untrusted_digest_not_skipped_by_allowlist if {
	d := with_data({"allowlist": {"http_fetch": {"agent-1": true}}})
	denied_with(decide(with_action({"digest_trusted": false}), d), "untrusted_digest")
}

# --- ACL ---------------------------------------------------------------------------------------

test_deny_principal_without_entry if {
	d := decide(with_input({"principal": "agent-9"}), base_data)
	denied_with(d, "not_in_acl")
	d.deny_reason == "action 'http_fetch' not in ACL for principal 'agent-9'"
}

test_deny_action_granted_to_another_principal if {
	denied_with(decide(with_input({"principal": "agent-2"}), base_data), "not_in_acl")
}

test_deny_no_acl_data_at_all if {
	denied_with(decide(base_input, with_data({"acl": {}})), "not_in_acl")
}

test_wildcard_entry_supplies_defaults if {
	d := with_data({"acl": {"*": {"actions": ["http_fetch"], "sinks": ["http_read"]}}})
	allowed(decide(with_input({"principal": "agent-new"}), d))
}

test_wildcard_entry_united_with_own_entry if {
	d := with_data({"acl": {
		"*": {"actions": ["http_fetch"], "sinks": ["http_read"]},
		"agent-3": {"actions": ["other"], "sinks": ["fs_write"]},
	}})
	allowed(decide(with_input({"principal": "agent-3"}), d))
}

test_not_in_acl_beats_missing_scope if {
	denied_with(decide(with_input({"principal": "agent-9", "scopes": []}), base_data), "not_in_acl")
}

# --- scopes ------------------------------------------------------------------------------------

test_deny_missing_base_scope if {
	d := decide(with_input({"scopes": []}), base_data)
	denied_with(d, "missing_scope")
	d.deny_reason == "lease is missing scopes: tools:call"
}

test_deny_missing_action_scope if {
	d := decide(with_input({"action": object.union(base_action, {"required_scopes": ["net:read", "gh:read"]}), "scopes": ["tools:call", "gh:read"]}), base_data)
	denied_with(d, "missing_scope")
	d.deny_reason == "lease is missing scopes: net:read"
}

test_allow_all_action_scopes_present if {
	allowed(decide(with_input({"action": object.union(base_action, {"required_scopes": ["net:read"]}), "scopes": ["net:read", "tools:call", "extra"]}), base_data))
}

test_missing_scope_beats_budget if {
	denied_with(decide(with_input({"scopes": [], "budget": {"exhausted": true, "remaining_calls": 0, "cost": 1}}), base_data), "missing_scope")
}

# --- budget ------------------------------------------------------------------------------------

test_deny_budget_flag_exhausted if {
	d := decide(with_input({"budget": {"exhausted": true, "remaining_calls": 5, "cost": 1}}), base_data)
	denied_with(d, "budget_exhausted")
	d.budgets_after == {"remaining_calls": 5}
}

test_allow_remaining_equals_cost_boundary if {
	d := decide(with_input({"budget": {"exhausted": false, "remaining_calls": 1, "cost": 1}}), base_data)
	allowed(d)
	d.budgets_after == {"remaining_calls": 0}
}

test_deny_remaining_below_cost_boundary if {
	denied_with(decide(with_input({"budget": {"exhausted": false, "remaining_calls": 0, "cost": 1}}), base_data), "budget_exhausted")
}

test_allow_unlimited_budget if {
	d := decide(with_input({"budget": {"exhausted": false, "remaining_calls": null, "cost": 1}}), base_data)
	allowed(d)
	d.budgets_after == {"remaining_calls": null}
}

test_budget_beats_sinks if {
	denied_with(decide(with_input({"budget": {"exhausted": true, "remaining_calls": 0, "cost": 1}, "requested_sinks": ["email_send"]}), base_data), "budget_exhausted")
}

# --- sinks -------------------------------------------------------------------------------------

test_deny_requested_sink_outside_principal_sinks if {
	d := decide(with_input({"requested_sinks": ["http_read", "email_send"]}), base_data)
	denied_with(d, "sink_not_allowed")
	d.deny_reason == "sinks not allowed for principal 'agent-1': email_send"
}

test_deny_declared_side_effect_even_if_not_requested if {
	d := decide(with_input({"principal": "agent-2", "action": object.union(base_action, {"id": "github_read", "declared_side_effects": ["http_write"]})}), base_data)
	denied_with(d, "sink_not_allowed")
}

test_allow_sink_from_wildcard_entry if {
	d := with_data({"acl": {
		"*": {"actions": [], "sinks": ["email_send"]},
		"agent-1": {"actions": ["http_fetch"], "sinks": ["http_read"]},
	}})
	r := decide(with_input({"requested_sinks": ["email_send"]}), d)
	allowed(r)
	r.approved_sinks == ["email_send", "http_read"]
}

test_allowlist_does_not_skip_sink_deny if {
	d := with_data({"allowlist": {"http_fetch": {"agent-1": true}}})
	denied_with(decide(with_input({"requested_sinks": ["email_send"]}), d), "sink_not_allowed")
}

# --- approval ----------------------------------------------------------------------------------

test_hold_high_risk if {
	d := decide(with_action({"risk_level": "high"}), base_data)
	held_for(d, ["risk_high"])
	d.approved_sinks == ["http_read"]
	d.matched_rules[count(d.matched_rules) - 1] == "approval.required"
}

test_hold_critical_risk if {
	held_for(decide(with_action({"risk_level": "critical"}), base_data), ["risk_critical"])
}

test_risk_override_raises_level if {
	d := decide(base_input, with_data({"risk_overrides": {"http_fetch": "high"}}))
	held_for(d, ["risk_high"])
	d.risk_level == "high"
}

test_risk_override_lowers_level if {
	d := decide(with_action({"risk_level": "critical"}), with_data({"risk_overrides": {"http_fetch": "low"}}))
	allowed(d)
	d.risk_level == "low"
}

test_invalid_risk_override_ignored if {
	held_for(decide(with_action({"risk_level": "high"}), with_data({"risk_overrides": {"http_fetch": "none"}})), ["risk_high"])
}

test_risk_override_for_other_action_ignored if {
	allowed(decide(base_input, with_data({"risk_overrides": {"http_post": "critical"}})))
}

test_hold_unresolved_domain if {
	held_for(decide(with_input({"egress": {"unresolved_domains": ["api.new.example"]}}), base_data), ["unresolved_domains"])
}

test_learned_exact_domain_resolves if {
	d := with_data({"learned_domains": [{"domain": "api.new.example", "action_id": "http_fetch", "source": "cli", "added_at": "2026-01-01T00:00:00Z"}]})
	allowed(decide(with_input({"egress": {"unresolved_domains": ["api.new.example"]}}), d))
}

test_learned_domain_of_other_action_does_not_resolve if {
	d := with_data({"learned_domains": [{"domain": "api.new.example", "action_id": "http_post", "source": "cli", "added_at": "2026-01-01T00:00:00Z"}]})
	held_for(decide(with_input({"egress": {"unresolved_domains": ["api.new.example"]}}), d), ["unresolved_domains"])
}

test_learned_wildcard_covers_subdomain if {
	d := with_data({"learned_domains": [{"domain": "*.example.com", "action_id": "http_fetch", "source": "cli", "added_at": "2026-01-01T00:00:00Z"}]})
	allowed(decide(with_input({"egress": {"unresolved_domains": ["a.b.example.com"]}}), d))
}

test_learned_wildcard_does_not_cover_apex if {
	d := with_data({"learned_domains": [{"domain": "*.example.com", "action_id": "http_fetch", "source": "cli", "added_at": "2026-01-01T00:00:00Z"}]})
	held_for(decide(with_input({"egress": {"unresolved_domains": ["example.com"]}}), d), ["unresolved_domains"])
}

test_learned_wildcard_needs_label_boundary if {
	d := with_data({"learned_domains": [{"domain": "*.example.com", "action_id": "http_fetch", "source": "cli", "added_at": "2026-01-01T00:00:00Z"}]})
	held_for(decide(with_input({"egress": {"unresolved_domains": ["evilexample.com"]}}), d), ["unresolved_domains"])
}

test_learned_wildcard_does_not_cover_bare_suffix if {
	d := with_data({"learned_domains": [{"domain": "*.example.com", "action_id": "http_fetch", "source": "cli", "added_at": "2026-01-01T00:00:00Z"}]})
	held_for(decide(with_input({"egress": {"unresolved_domains": [".example.com"]}}), d), ["unresolved_domains"])
}

test_hold_unresolved_path if {
	held_for(decide(with_input({"egress": {"unresolved_paths": ["/data/x"]}}), base_data), ["unresolved_paths"])
}

test_learned_path_covers_itself_and_below if {
	d := with_data({"learned_paths": [{"path": "/data/reports", "action_id": "http_fetch", "source": "cli", "added_at": "2026-01-01T00:00:00Z"}]})
	allowed(decide(with_input({"egress": {"unresolved_paths": ["/data/reports", "/data/reports/q1/a.csv"]}}), d))
}

test_learned_path_needs_separator_boundary if {
	d := with_data({"learned_paths": [{"path": "/data/reports", "action_id": "http_fetch", "source": "cli", "added_at": "2026-01-01T00:00:00Z"}]})
	held_for(decide(with_input({"egress": {"unresolved_paths": ["/data/reportsX"]}}), d), ["unresolved_paths"])
}

test_sensitive_path_held_even_if_learned if {
	d := with_data({"learned_paths": [{"path": "/etc", "action_id": "http_fetch", "source": "cli", "added_at": "2026-01-01T00:00:00Z"}]})
	held_for(decide(with_input({"egress": {"sensitive_paths": ["/etc/shadow"]}}), d), ["sensitive_paths"])
}

test_all_approval_reasons_in_fixed_order if {
	inp := with_input({
		"action": object.union(base_action, {"risk_level": "critical"}),
		"egress": {"unresolved_domains": ["x.example"], "unresolved_paths": ["/x"], "sensitive_paths": ["/etc/passwd"]},
	})
	d := decide(inp, base_data)
	held_for(d, ["risk_critical", "unresolved_domains", "unresolved_paths", "sensitive_paths"])
}

# --- allowlist ---------------------------------------------------------------------------------

test_allowlist_skips_approval if {
	d := decide(with_action({"risk_level": "critical"}), with_data({"allowlist": {"http_fetch": {"agent-1": true}}}))
	allowed(d)
	"allowlist.skip_approval" in d.matched_rules
}

test_allowlist_for_other_principal_does_not_skip if {
	held_for(decide(with_action({"risk_level": "high"}), with_data({"allowlist": {"http_fetch": {"agent-2": true}}})), ["risk_high"])
}

test_allowlist_for_other_action_does_not_skip if {
	held_for(decide(with_action({"risk_level": "high"}), with_data({"allowlist": {"http_post": {"agent-1": true}}})), ["risk_high"])
}

test_allowlist_string_true_does_not_skip if {
	held_for(decide(with_action({"risk_level": "high"}), with_data({"allowlist": {"http_fetch": {"agent-1": "true"}}})), ["risk_high"])
}

test_allowlist_does_not_skip_acl_deny if {
	denied_with(decide(with_input({"principal": "agent-9"}), with_data({"allowlist": {"http_fetch": {"agent-9": true}}})), "not_in_acl")
}

# --- modes -------------------------------------------------------------------------------------

test_mode_default_enforce if {
	decide(base_input, base_data).enforcement_mode == "enforce"
}

test_mode_principal_only if {
	decide(base_input, with_data({"modes": {"principals": {"agent-1": "monitor"}, "actions": {}}})).enforcement_mode == "monitor"
}

test_mode_action_only if {
	decide(base_input, with_data({"modes": {"principals": {}, "actions": {"http_fetch": "warn"}}})).enforcement_mode == "warn"
}

test_mode_stricter_of_two_warn if {
	decide(base_input, with_data({"modes": {"principals": {"agent-1": "monitor"}, "actions": {"http_fetch": "warn"}}})).enforcement_mode == "warn"
}

test_mode_stricter_of_two_enforce if {
	decide(base_input, with_data({"modes": {"principals": {"agent-1": "monitor"}, "actions": {"http_fetch": "enforce"}}})).enforcement_mode == "enforce"
}

test_mode_unknown_value_is_enforce if {
	decide(base_input, with_data({"modes": {"principals": {"agent-1": "off"}, "actions": {}}})).enforcement_mode == "enforce"
}

monitor_for(principal) := with_data({"modes": {"principals": {principal: "monitor"}, "actions": {}}})

test_monitor_downgrades_acl_deny if {
	d := decide(with_input({"principal": "agent-9"}), monitor_for("agent-9"))
	d.allow == true
	d.deny_reason_code == null
	d.would_deny_reason_code == "not_in_acl"
	d.would_deny_reason == "action 'http_fetch' not in ACL for principal 'agent-9'"
	d.matched_rules == [
		"input.valid", "trust.digest_trusted", "would_deny.not_in_acl", "scopes.satisfied",
		"budget.available", "would_deny.sink_not_allowed", "approval.not_required", "allow",
	]
	d.approved_sinks == ["http_read"]
}

test_warn_downgrades_missing_scope if {
	d := decide(with_input({"scopes": []}), with_data({"modes": {"principals": {}, "actions": {"http_fetch": "warn"}}}))
	d.allow == true
	d.enforcement_mode == "warn"
	d.would_deny_reason_code == "missing_scope"
}

test_monitor_never_downgrades_untrusted_digest if {
	denied_with(decide(with_action({"digest_trusted": false}), monitor_for("agent-1")), "untrusted_digest")
}

test_monitor_never_downgrades_budget_after_soft_failure if {
	d := decide(with_input({"principal": "agent-9", "budget": {"exhausted": true, "remaining_calls": 0, "cost": 1}}), monitor_for("agent-9"))
	denied_with(d, "budget_exhausted")
	d.matched_rules == ["input.valid", "trust.digest_trusted", "would_deny.not_in_acl", "scopes.satisfied", "deny.budget_exhausted"]
}

test_monitor_never_downgrades_invalid_input if {
	inp := object.remove(base_input, ["egress"])
	denied_with(decide(inp, monitor_for("agent-1")), "invalid_input")
}

test_monitor_downgrade_still_holds_high_risk if {
	inp := with_input({"principal": "agent-9", "action": object.union(base_action, {"risk_level": "high"})})
	d := decide(inp, monitor_for("agent-9"))
	d.requires_approval == true
	d.allow == false
	d.approval_reasons == ["risk_high"]
	d.would_deny_reason_code == "not_in_acl"
}

test_monitor_downgraded_sink_is_approved if {
	d := decide(with_input({"requested_sinks": ["email_send"]}), monitor_for("agent-1"))
	d.allow == true
	d.would_deny_reason_code == "sink_not_allowed"
	d.approved_sinks == ["email_send", "http_read"]
}

test_action_enforce_overrides_principal_monitor if {
	d := with_data({"modes": {"principals": {"agent-9": "monitor"}, "actions": {"http_fetch": "enforce"}}})
	denied_with(decide(with_input({"principal": "agent-9"}), d), "not_in_acl")
}

# --- version -----------------------------------------------------------------------------------

test_policy_version_unset_when_missing if {
	d := authz.decision with input as base_input with data.acl as base_data.acl
	allowed(d)
	d.policy_version == "unset"
}
