-- Incremental, append-only with a date cursor: clickstream events are never modified after
-- they land, and a day lands whole, so appending the days after the last one loaded is safe.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    meta={'rescue': {'date_column': 'event_date', 'max_lag_days': 1}},
) }}
select
    event_id,
    session_id,
    customer_id,
    page,
    event_at,
    event_date
from {{ ref('stg_web_events') }}
where event_type = 'page_view'
{% if is_incremental() %}
  and event_date > (select coalesce(max(event_date), date '1900-01-01') from {{ this }})
{% endif %}
