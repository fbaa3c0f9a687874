# Rendered by `cargo xtask render` from templates/nginx/conf/nginx.conf.tpl: edit the template.
worker_processes {{NGINX_WORKER_PROCESSES}};

events {
    worker_connections 1024;
}

http {
    include /etc/nginx/mime.types;
    client_max_body_size {{NGINX_MAX_BODY_SIZE}};

    upstream backend    { server backend:{{BACKEND_PORT}}; }
    upstream frontend   { server frontend:{{FRONTEND_PORT}}; }
    upstream jupyterhub { server jupyterhub:{{JUPYTERHUB_PORT}}; }
    upstream gitea      { server gitea:{{GITEA_PORT}}; }

    server {
        listen 80;
        server_name {{DOMAIN}};

        proxy_set_header Host $host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;

        location /api/ { proxy_pass http://backend; }
        location /jupyter/ {
            proxy_pass http://jupyterhub;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
        }
        location /gitea/ { proxy_pass http://gitea/; }
        location / { proxy_pass http://frontend; }
    }
}
