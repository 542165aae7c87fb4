package stackyard

import rego.v1

mock_env(owner) := {
	"stage": "environment",
	"actor": {"name": "ann", "teams": ["team-checkout"], "roles": []},
	"environment": {
		"name": "pr-7",
		"type": "ephemeral",
		"owner": owner,
		"ephemeral": true,
		"expires_at": "2026-12-02T00:00:00Z",
		"regions": ["local"],
		"labels": {},
		"parent": "dev",
	},
}

test_owned_environment_passes if {
	count(deny) == 0 with input as mock_env("team-checkout")
}

test_null_owner_is_denied if {
	deny == {{
		"msg": "environment pr-7 has no owner; give it an owning team (--owner TEAM, or spec.owner in its Environment document)",
		"rule": "owner-required",
	}} with input as mock_env(null)
}

test_empty_owner_is_denied if {
	count(deny) == 1 with input as mock_env("")
}

test_blank_owner_is_denied if {
	count(deny) == 1 with input as mock_env("   ")
}

test_missing_owner_key_is_denied if {
	doc := json.remove(mock_env("x"), ["environment/owner"])
	count(deny) == 1 with input as doc
}

test_non_string_owner_is_denied if {
	count(deny) == 1 with input as mock_env(["team-checkout"])
}

test_missing_environment_is_denied_with_a_placeholder_name if {
	denied := deny with input as {"stage": "environment"}
	some d in denied
	startswith(d.msg, "environment (unnamed) has no owner")
}
