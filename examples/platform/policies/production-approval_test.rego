package stackyard

import rego.v1

# Plan changes are per resource: address "<type>.<class>#<id>/<resource>", kind the
# resource kind of the provider.
mock_change(address, kind, action) := {
	"address": address,
	"kind": kind,
	"action": action,
	"before": {},
	"after": {},
}

mock_plan(changes) := {
	"stage": "plan",
	"environment": {"name": "production", "type": "production"},
	"plan": {"changes": changes},
}

db := "postgres.default#checkout.db/database"

role := "postgres.default#checkout.db/role"

test_replace_needs_approval if {
	approval == {{
		"msg": "postgres.default#checkout.db/database (postgres.database) would be replaced in production",
		"rule": "destructive-change",
	}} with input as mock_plan([mock_change(db, "postgres.database", "replace")])
}

test_delete_needs_approval if {
	asked := approval with input as mock_plan([mock_change(role, "postgres.role", "delete")])
	count(asked) == 1
	some a in asked
	a.rule == "destructive-change"
	a.msg == "postgres.default#checkout.db/role (postgres.role) would be deleted in production"
}

test_one_approval_per_destructive_change if {
	changes := [
		mock_change(db, "postgres.database", "delete"),
		mock_change(role, "postgres.role", "replace"),
		mock_change("redis.default#checkout.cache/user", "redis.acl_user", "create"),
		mock_change("postgres.default#checkout.db/grant", "postgres.grant", "update"),
		mock_change("volume.default#checkout.data/directory", "local.directory", "noop"),
	]
	count(approval) == 2 with input as mock_plan(changes)
}

test_create_update_and_noop_pass if {
	changes := [
		mock_change(db, "postgres.database", "create"),
		mock_change(role, "postgres.role", "update"),
		mock_change("volume.default#checkout.data/directory", "local.directory", "noop"),
	]
	count(approval) == 0 with input as mock_plan(changes)
}

test_destroy_stage_asks_for_every_delete if {
	doc := json.patch(
		mock_plan([
			mock_change("postgres-instance.default#core/server", "local.postgres_server", "delete"),
			mock_change("postgres-instance.default#core/password", "random.password", "delete"),
		]),
		[{"op": "replace", "path": "/stage", "value": "destroy"}],
	)
	count(approval) == 2 with input as doc
}

test_empty_plan_passes if {
	count(approval) == 0 with input as mock_plan([])
}

test_no_plan_passes if {
	count(approval) == 0 with input as {"stage": "plan", "environment": {"name": "production"}, "plan": null}
}
