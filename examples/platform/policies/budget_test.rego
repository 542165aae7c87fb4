package stackyard

import rego.v1

mock_cost(env_type, total) := {
	"stage": "plan",
	"environment": {"name": "checkout", "type": env_type},
	"cost": {
		"monthly_total": total,
		"delta": "5.00",
		"currency": "USD",
		"by_resource": {"checkout.db": "4.00", "checkout.cache": "1.00"},
	},
}

test_within_budget_passes if {
	count(deny) == 0 with input as mock_cost("development", "5.00")
	count(warn) == 0 with input as mock_cost("development", "5.00")
}

test_over_budget_is_denied if {
	deny == {{
		"msg": "checkout would cost 100.01 USD a month, over the development budget of 100 USD (delta 5.00)",
		"rule": "over-budget",
	}} with input as mock_cost("development", "100.01")
	count(warn) == 0 with input as mock_cost("development", "100.01")
}

test_exactly_the_budget_warns_but_passes if {
	count(deny) == 0 with input as mock_cost("ephemeral", "25.00")
	warned := warn with input as mock_cost("ephemeral", "25.00")
	{w.rule | some w in warned} == {"near-budget"}
}

test_above_80_percent_warns if {
	warn == {{
		"msg": "checkout would cost 170.00 USD a month, 85 % of the staging budget of 200 USD",
		"rule": "near-budget",
	}} with input as mock_cost("staging", "170.00")
	count(deny) == 0 with input as mock_cost("staging", "170.00")
}

test_exactly_80_percent_does_not_warn if {
	count(warn) == 0 with input as mock_cost("production", "800.00")
}

test_each_type_has_its_own_budget if {
	count(deny) == 1 with input as mock_cost("ephemeral", "26.00")
	count(deny) == 0 with input as mock_cost("staging", "26.00")
	count(deny) == 1 with input as mock_cost("production", "1000.50")
}

test_type_without_budget_passes if {
	count(deny) == 0 with input as mock_cost("sandbox", "99999.00")
	count(warn) == 0 with input as mock_cost("sandbox", "99999.00")
}

test_no_cost_passes if {
	count(deny) == 0 with input as {"stage": "plan", "environment": {"name": "dev", "type": "development"}, "cost": null}
}

test_other_currency_warns_instead_of_checking if {
	doc := json.patch(mock_cost("development", "500.00"), [{"op": "replace", "path": "/cost/currency", "value": "EUR"}])
	count(deny) == 0 with input as doc
	warned := warn with input as doc
	{w.rule | some w in warned} == {"budget-currency"}
}
