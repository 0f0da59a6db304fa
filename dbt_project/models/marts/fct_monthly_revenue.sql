-- Incremental on a monthly refresh window: each run restates the latest month it has and the
-- month before it (delete+insert on revenue_month). Changes to older months are only picked
-- up by a full refresh.
{{ config(
    materialized='incremental',
    unique_key='revenue_month',
    incremental_strategy='delete+insert',
    meta={'rescue': {'date_column': 'revenue_month', 'max_lag_days': 31, 'cadence': 'monthly'}},
) }}
select
    cast(date_trunc('month', order_date) as date) as revenue_month,
    count(*) as orders,
    count(*) filter (where status = 'returned') as returned_orders,
    sum(items_amount) as gross_amount,
    sum(net_amount) as net_amount
from {{ ref('int_orders_enriched') }}
{% if is_incremental() %}
where order_date >= (select max(revenue_month) - interval 1 month from {{ this }})
{% endif %}
group by 1
