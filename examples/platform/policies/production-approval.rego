# Production: replacing or deleting anything waits for an approver (a second pair of eyes).
# Layer environment-type (production), stages plan and destroy.
package stackyard

import rego.v1

# Plan actions that lose a resource's state (a replace destroys the old one first).
destructive := {"replace": "replaced", "delete": "deleted"}

approval contains {"msg": msg, "rule": "destructive-change"} if {
	some change in input.plan.changes
	verb := destructive[change.action]
	msg := sprintf(
		"%s (%s) would be %s in %s",
		[change.address, change.kind, verb, object.get(input, ["environment", "name"], "production")],
	)
}
