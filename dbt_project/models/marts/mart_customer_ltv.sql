select
    c.customer_id,
    c.country,
    c.signup_date,
    count(o.order_id) as orders,
    coalesce(sum(o.net_amount), 0) as net_revenue,
    coalesce(avg(o.net_amount), 0) as avg_order_value,
    case
        when coalesce(sum(o.net_amount), 0) >= 500 then 'high'
        when coalesce(sum(o.net_amount), 0) >= 100 then 'medium'
        else 'low'
    end as ltv_band
from {{ ref('dim_customers') }} as c
left join {{ ref('fct_orders') }} as o using (customer_id)
group by all
