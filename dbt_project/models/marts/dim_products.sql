select
    p.product_id,
    p.product_name,
    p.category,
    p.unit_price,
    coalesce(sum(s.units), 0) as units_sold,
    coalesce(sum(s.revenue), 0) as revenue,
    max(s.order_date) as last_sold_date
from {{ ref('stg_products') }} as p
left join {{ ref('int_product_daily_sales') }} as s using (product_id)
group by all
