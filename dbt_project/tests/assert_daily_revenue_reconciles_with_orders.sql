-- shows in Dagster as a check of fct_daily_revenue (it reads two models)
{{ config(meta={'dagster': {'ref': {'name': 'fct_daily_revenue'}}}) }}
-- Revenue per day must add up to the revenue of the orders, to the cent.
select 1
from (select sum(net_amount) as total from {{ ref('fct_daily_revenue') }}) as d
cross join (select sum(net_amount) as total from {{ ref('fct_orders') }}) as o
where abs(coalesce(d.total, 0) - coalesce(o.total, 0)) > 0.005
