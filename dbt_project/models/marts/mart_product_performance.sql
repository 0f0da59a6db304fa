select
    p.category,
    count(distinct p.product_id) as products,
    sum(p.units_sold) as units_sold,
    sum(p.revenue) as revenue,
    max(p.last_sold_date) as last_sold_date
from {{ ref('dim_products') }} as p
group by 1
