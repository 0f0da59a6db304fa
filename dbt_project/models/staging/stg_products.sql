select
    product_id,
    product_name,
    category,
    unit_price,
    loaded_at
from {{ source('raw', 'products') }}
