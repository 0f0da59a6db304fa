-- Incremental, merge on order_id: orders change after they are placed (shipping, returns,
-- late payments), so each run merges every order whose inputs landed since the last run.
-- The cursor is the landing time, not the order date, so late-arriving rows are never skipped.
{{ config(
    materialized='incremental',
    unique_key='order_id',
    incremental_strategy='merge',
    on_schema_change='append_new_columns',
    meta={'rescue': {'date_column': 'order_date', 'max_lag_days': 1}},
) }}
select
    order_id,
    customer_id,
    order_date,
    status,
    item_count,
    units,
    items_amount,
    paid_amount,
    refunded_amount,
    net_amount,
    paid_amount >= items_amount as is_paid,
    loaded_at
from {{ ref('int_orders_enriched') }}
{% if is_incremental() %}
where loaded_at > (select coalesce(max(loaded_at), timestamp '1900-01-01') from {{ this }})
{% endif %}
