// Validate Backstage entities with Backstage's own @backstage/catalog-model, the checks its
// catalog backend runs on every entity it reads from a location: the envelope schema, the
// default entity policies (schema, default namespace, no foreign root fields, field formats),
// the kind's own JSON schema (exactly one of the built-in kinds' validators must accept it),
// and the entity references its relation fields hold (owner, system, dependsOn, members...).
//
// Usage: node backstage_validate.js NODE_MODULES_PARENT < entities.json
// stdin: a JSON array of entities. stdout: a JSON array, one {index, ref, valid, errors} per
// entity, in order. Exit status 0 when the input could be read, whatever the verdicts.
"use strict";

const path = require("node:path");

const where = process.argv[2];
if (!where) {
  process.stderr.write("usage: node backstage_validate.js DIR_HOLDING_NODE_MODULES\n");
  process.exit(2);
}
const model = require(require.resolve("@backstage/catalog-model", { paths: [path.resolve(where)] }));

const policy = model.EntityPolicies.allOf([
  new model.SchemaValidEntityPolicy(),
  new model.DefaultNamespaceEntityPolicy(),
  new model.NoForeignRootFieldsEntityPolicy(),
  new model.FieldFormatEntityPolicy(),
]);

const kindValidators = [
  model.apiEntityV1alpha1Validator,
  model.componentEntityV1alpha1Validator,
  model.domainEntityV1alpha1Validator,
  model.groupEntityV1alpha1Validator,
  model.locationEntityV1alpha1Validator,
  model.resourceEntityV1alpha1Validator,
  model.systemEntityV1alpha1Validator,
  model.userEntityV1alpha1Validator,
];

// The relation fields of the built-in kinds, with the kind a bare reference defaults to
// (BuiltinKindsEntityProcessor); every value must parse as an entity reference.
const refFields = [
  ["spec.owner", "Group"],
  ["spec.system", "System"],
  ["spec.domain", "Domain"],
  ["spec.subcomponentOf", "Component"],
  ["spec.parent", "Group"],
  ["spec.children", "Group"],
  ["spec.members", "User"],
  ["spec.memberOf", "Group"],
  ["spec.dependsOn", undefined],
  ["spec.dependencyOf", undefined],
  ["spec.providesApis", "API"],
  ["spec.consumesApis", "API"],
];

function get(entity, dotted) {
  return dotted.split(".").reduce((v, k) => (v == null ? undefined : v[k]), entity);
}

function checkRefs(entity) {
  const errors = [];
  const namespace = (entity.metadata && entity.metadata.namespace) || model.DEFAULT_NAMESPACE;
  for (const [field, defaultKind] of refFields) {
    const value = get(entity, field);
    if (value === undefined) continue;
    for (const one of Array.isArray(value) ? value : [value]) {
      try {
        const parsed = model.parseEntityRef(one, { defaultKind, defaultNamespace: namespace });
        if (!parsed.kind) throw new Error(`${field}: '${one}' names no kind`);
      } catch (e) {
        errors.push(`${field}: ${e.message}`);
      }
    }
  }
  return errors;
}

async function validate(entity) {
  const errors = [];
  try {
    model.entityEnvelopeSchemaValidator()(entity);
  } catch (e) {
    return [`envelope: ${e.message}`];
  }
  let checked = entity;
  try {
    checked = await policy.enforce(entity);
    if (!checked) return ["policy: rejected"];
  } catch (e) {
    errors.push(`policy: ${e.message}`);
  }
  let accepted = 0;
  for (const validator of kindValidators) {
    try {
      if (await validator.check(checked)) accepted += 1;
    } catch (e) {
      errors.push(`kind: ${e.message}`);
    }
  }
  if (accepted !== 1 && errors.length === 0) {
    errors.push(`kind: ${accepted} built-in kind validators accepted it (want exactly 1)`);
  }
  errors.push(...checkRefs(entity));
  return errors;
}

async function main() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const entities = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  const out = [];
  for (let i = 0; i < entities.length; i += 1) {
    const entity = entities[i];
    const errors = await validate(entity);
    let ref = null;
    try {
      ref = model.stringifyEntityRef(entity);
    } catch (e) {
      ref = null;
    }
    out.push({ index: i, ref, valid: errors.length === 0, errors });
  }
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((e) => {
  process.stderr.write(`${e.stack || e}\n`);
  process.exit(1);
});
