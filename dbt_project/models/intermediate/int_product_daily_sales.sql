select
    o.order_date,
    i.product_id,
    i.category,
    sum(i.quantity) as units,
    sum(i.line_amount) as revenue
from {{ ref('int_order_items_priced') }} as i
join {{ ref('stg_orders') }} as o using (order_id)
where o.status <> 'returned'
group by 1, 2, 3
