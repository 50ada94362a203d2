"""Merge staged rows into an entity table: insert new keys, update changed rows, leave equal rows alone."""

from dataclasses import dataclass, field

from django.db import connection, models
from django.utils import timezone

from impex.services.sql import Stage, db_param, distinct, is_postgres, qn


@dataclass
class UpsertPlan:
    """Which columns a file writes to a table, and the constants that go with them."""

    model: type[models.Model]
    key_fields: list[models.Field]
    data_fields: list[models.Field]  # present columns that are not keys (FKs as their *_id column)
    insert_constants: dict[str, object] = field(default_factory=dict)  # attname -> value, for new rows only
    update_constants: dict[str, object] = field(default_factory=dict)  # attname -> value, compared and set
    has_connection: bool = True

    @property
    def table(self) -> str:
        return self.model._meta.db_table


def plan_for(
    model: type[models.Model], *, key_attnames: list[str], data_attnames: list[str], revive: dict[str, object]
) -> UpsertPlan:
    """Build the upsert plan of a table: defaults for absent NOT NULL fields, revive values for FULL files."""
    fields_by_att = {f.attname: f for f in model._meta.concrete_fields}
    key_fields = [fields_by_att[a] for a in key_attnames]
    data_fields = [fields_by_att[a] for a in data_attnames if a not in key_attnames]
    present = set(key_attnames) | set(data_attnames)
    update_constants = {a: v for a, v in revive.items() if a not in present}
    insert_constants = {}
    for f in model._meta.concrete_fields:
        if f.primary_key or f.attname in present or f.attname in update_constants:
            continue
        if f.attname in ("created_at", "updated_at", "connection_id"):
            continue
        if f.has_default():
            insert_constants[f.attname] = f.get_default()
        elif isinstance(f, models.CharField | models.TextField) and not f.null:
            insert_constants[f.attname] = ""
    return UpsertPlan(
        model=model,
        key_fields=key_fields,
        data_fields=data_fields,
        insert_constants=insert_constants,
        update_constants=update_constants,
        has_connection=any(f.attname == "connection_id" for f in model._meta.concrete_fields),
    )


def stage_for(plan: UpsertPlan, *, extra: list[tuple[str, str]] = ()) -> Stage:
    """Create the staging table layout of a plan: row number, key text, then the table's columns."""
    cols = [("_row", "bigint"), ("_key", "text")] + list(extra)
    cols += [(f.column, f.db_type(connection)) for f in plan.key_fields + plan.data_fields]
    return Stage(columns=cols)


@dataclass
class UpsertResult:
    """What an upsert did: counts, and the primary keys when they were asked for."""

    created: int = 0
    changed: int = 0
    created_pks: set = field(default_factory=set)
    changed_pks: set = field(default_factory=set)


def upsert(
    cursor,
    *,
    plan: UpsertPlan,
    stage: Stage,
    connection_id: int | None,
    want_pks: bool = False,
    where: str = "true",
) -> UpsertResult:
    """Merge the staged rows (those matching where) into the table: insert new keys, update rows that differ."""
    now = timezone.now()
    model_fields = {f.attname: f for f in plan.model._meta.concrete_fields}
    cols = [f.column for f in plan.key_fields + plan.data_fields]
    insert_cols = list(cols)
    select = [f"s.{qn(c)}" for c in cols]
    params: list = []
    constants = list(plan.insert_constants.items()) + list(plan.update_constants.items())
    for att in ("created_at", "updated_at"):
        if att in model_fields:
            constants.append((att, now))
    for att, value in constants:
        insert_cols.append(model_fields[att].column)
        select.append("%s")
        params.append(db_param(model_fields[att], value))
    if plan.has_connection:
        insert_cols.append("connection_id")
        select.append("%s")
        params.append(connection_id)
    table = qn(plan.table)
    # What a column becomes: the staged value; a FULL file's revive constant only on the records of its connection,
    # which alone it retires and brings back (SPEC section 5).
    compare = [(f.column, f"EXCLUDED.{qn(f.column)}") for f in plan.data_fields]
    revive_params: list = []
    for att in plan.update_constants:
        column = qn(model_fields[att].column)
        value = f"EXCLUDED.{column}"
        if plan.has_connection:
            value = f"CASE WHEN {table}.connection_id = %s THEN {value} ELSE {table}.{column} END"
            revive_params.append(connection_id)
        compare.append((model_fields[att].column, value))
    conflict = ", ".join(qn(f.column) for f in plan.key_fields)
    if compare:
        sets = [f"{qn(c)} = {value}" for c, value in compare]
        params += revive_params
        if "updated_at" in model_fields:
            sets.append(f"{qn('updated_at')} = EXCLUDED.{qn('updated_at')}")
        # connection_id is not set here: a record's source is the connection whose file or update created it, and
        # files and updates of other connections (or an admin's sheet) change its columns, never its source
        # (SPEC section 5); that connection's next FULL file must still be able to retire it.
        changed = " OR ".join(distinct(f"{table}.{qn(c)}", value) for c, value in compare)
        params += revive_params
        action = f"DO UPDATE SET {', '.join(sets)} WHERE {changed}"
    else:
        action = "DO NOTHING"
    pk = qn(plan.model._meta.pk.column)
    sql = (
        f"INSERT INTO {table} ({', '.join(qn(c) for c in insert_cols)}) "
        f"SELECT {', '.join(select)} FROM {qn(stage.name)} s WHERE {where} "
        f"ON CONFLICT ({conflict}) {action}"
    )
    result = UpsertResult()
    if is_postgres():
        if not want_pks:
            # Only the counts: PostgreSQL adds them up instead of sending a row back for each record.
            stage.execute(
                cursor,
                f"WITH w AS ({sql} RETURNING (xmax = 0) AS created) "
                "SELECT count(*) FILTER (WHERE created), count(*) FILTER (WHERE NOT created) FROM w",
                params,
            )
            result.created, result.changed = cursor.fetchone()
            return result
        stage.execute(cursor, f"{sql} RETURNING (xmax = 0), {table}.{pk}", params)
        rows = cursor.fetchall()
        result.created_pks = {r[1] for r in rows if r[0]}
        result.changed_pks = {r[1] for r in rows if not r[0]}
        result.created, result.changed = len(result.created_pks), len(result.changed_pks)
        return result
    on = " AND ".join(f"t.{qn(f.column)} = s.{qn(f.column)}" for f in plan.key_fields)
    cursor.execute(f"SELECT t.{pk} FROM {qn(stage.name)} s JOIN {table} t ON {on} WHERE {where}")
    existing = {r[0] for r in cursor.fetchall()}
    cursor.execute(f"{sql} RETURNING {pk}", params)
    touched = {r[0] for r in cursor.fetchall()}
    result.created_pks = touched - existing
    result.changed_pks = touched & existing
    result.created, result.changed = len(result.created_pks), len(result.changed_pks)
    return result
