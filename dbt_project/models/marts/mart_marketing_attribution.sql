-- Revenue by first landing page: joins the clickstream lineage with the orders lineage.
select
    coalesce(t.first_landing_page, '(no web session)') as first_landing_page,
    count(distinct o.customer_id) as customers,
    sum(o.order_count) as orders,
    sum(o.lifetime_net_amount) as net_revenue
from {{ ref('int_customer_orders') }} as o
left join {{ ref('int_customer_first_touch') }} as t using (customer_id)
group by 1
